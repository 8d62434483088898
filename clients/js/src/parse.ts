import type { EventType, Meta, RelayEvent } from './types.js';

/** Every stream event type of CONTRACT.md §4, §8 and §9. */
export const EVENT_TYPES: readonly EventType[] = [
  'messageCreate', 'messageUpdate', 'messageDelete', 'reactionAdd', 'reactionRemove', 'typingStart',
  'voice.joined', 'voice.left', 'voice.snapshot', 'access', 'gateway.status', 'stream.reset', 'error',
];

const KNOWN = new Set<string>(EVENT_TYPES);

/** Whether `type` is one of the contract's event types. */
export function isEventType(type: string): type is EventType {
  return KNOWN.has(type);
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (o: Obj, ...keys: string[]) => keys.every((k) => typeof o[k] === 'string');

/** The fields without which an event of each type is useless to a view. */
const REQUIRED: Record<EventType, (d: Obj) => boolean> = {
  messageCreate: (d) => str(d, 'id', 'channelId') && isObj(d.author) && typeof d.author.id === 'string',
  messageUpdate: (d) => str(d, 'id', 'channelId'),
  messageDelete: (d) => str(d, 'id', 'channelId'),
  reactionAdd: (d) => str(d, 'channelId', 'messageId', 'userId') && isObj(d.emoji),
  reactionRemove: (d) => str(d, 'channelId', 'messageId', 'userId') && isObj(d.emoji),
  typingStart: (d) => str(d, 'channelId', 'userId'),
  'voice.joined': (d) => str(d, 'channelId', 'userId'),
  'voice.left': (d) => str(d, 'userId') && (d.channelId === null || d.channelId === undefined || typeof d.channelId === 'string'),
  'voice.snapshot': (d) => isObj(d.channels),
  access: (d) => str(d, 'guildId') && isObj(d.channels),
  'gateway.status': (d) => typeof d.connected === 'boolean',
  'stream.reset': (d) => d.reason === 'gap' || d.reason === 'epoch',
  error: (d) => str(d, 'code'),
};

/**
 * Reads one SSE `data:` line: an `SseEvent` envelope
 * `{"version","event","data","meta"}`. `name` is the SSE event name (`message`
 * for frames without `event:`, then the envelope's `event` names it). Returns
 * null for text that is not JSON or an event that lacks what its type needs;
 * an unknown type is passed through untyped (`known: false`).
 */
export function parseEvent(name: string, text: string, id?: string):
  | { known: true; event: RelayEvent }
  | { known: false; event: { type: string; data: unknown; meta: Meta } }
  | null {
  let env: unknown;
  try {
    env = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObj(env)) return null;
  const type = name === 'message' && typeof env.event === 'string' ? env.event : name;
  const data = 'data' in env ? env.data : env;
  const m = isObj(env.meta) ? env.meta : {};
  const meta: Meta = {
    traceId: typeof m.traceId === 'string' ? m.traceId : '',
    sentAt: typeof m.sentAt === 'string' ? m.sentAt : '',
  };
  if (id) meta.id = id;
  if (typeof m.rev === 'number' && Number.isSafeInteger(m.rev)) meta.rev = m.rev;
  if (!isEventType(type)) return { known: false, event: { type, data, meta } };
  if (!isObj(data) || !REQUIRED[type](data)) return null;
  if (type === 'voice.left' && data.channelId === undefined) data.channelId = null;
  return { known: true, event: { type, data, meta } as unknown as RelayEvent };
}
