// The shapes of CONTRACT.md §4 (events), §3 (commands), §8 (access) and §9
// (history, reactionRemove, messageCreate.via). Field names are the wire's.

/** Metadata of every stream event. `id`: the stream's event id (`<epoch>-<seq>`) when the event had one. */
export interface Meta {
  traceId: string;
  sentAt: string;
  id?: string;
  /**
   * On message events (create, update, delete, reactions): the gateway window's
   * revision once the event is in it. A history page whose `rev` is at least this
   * already counts the event (docs/history.md).
   */
  rev?: number;
}

export interface Author {
  id: string;
  username: string;
  avatar: string | null;
  bot: boolean;
}

/** A unicode emoji has `id: null`; a custom one has both. */
export interface Emoji {
  id: string | null;
  name: string | null;
}

export interface ReactionCount {
  emoji: Emoji;
  count: number;
}

export interface MessageCreate {
  id: string;
  channelId: string;
  guildId: string;
  author: Author;
  content: string;
  timestamp: string;
  /** `"relay"` when relay posted it under the sender's name through a webhook (§9, ACCESS=discord). */
  via?: 'relay';
}

/** A message as history returns it (§9): `messageCreate`'s data, with edits and reaction counts. */
export interface Message extends MessageCreate {
  editedTimestamp?: string | null;
  reactions: ReactionCount[];
  /**
   * The window revision this copy reflects: the history answer's `rev`, then
   * the `meta.rev` of each live event applied to it. Events at or below it are
   * already counted and are skipped (a reaction made while the page was fetched).
   */
  rev?: number;
}

export interface MessageUpdate {
  id: string;
  channelId: string;
  guildId: string;
  content?: string;
  editedTimestamp?: string | null;
}

export interface MessageDelete {
  id: string;
  channelId: string;
  guildId: string;
}

/** `reactionAdd` and `reactionRemove` (v1.1). */
export interface Reaction {
  channelId: string;
  messageId: string;
  userId: string;
  emoji: Emoji;
}

export interface TypingStart {
  channelId: string;
  userId: string;
  timestamp: string;
}

export interface VoiceMember {
  guildId: string;
  userId: string;
  username?: string;
  avatar?: string | null;
}

export interface VoiceJoined {
  guildId: string;
  channelId: string;
  userId: string;
  username?: string;
  avatar?: string | null;
}

export interface VoiceLeft {
  guildId: string;
  /** The channel left, or null (older gateways). */
  channelId: string | null;
  userId: string;
}

export interface VoiceSnapshot {
  channels: Record<string, VoiceMember[]>;
}

/** SSE `error` events: gateway error frames and `malformed_frame`. */
export interface StreamError {
  code: string;
  message: string;
  requestId?: string;
}

export interface GatewayStatus {
  connected: boolean;
}

export interface StreamReset {
  reason: 'gap' | 'epoch';
}

/** What the member may do in one channel (`access` events, ACCESS=discord). */
export type Can = 'view' | 'history' | 'send' | 'react' | 'connect' | 'moveMembers' | 'muteMembers';

export interface ChannelAccess {
  name: string;
  /** Discord channel type (0 text, 2 voice, 5 announcement, 10–12 threads, 13 stage …). */
  type: number;
  parentId: string | null;
  can: Can[];
}

export interface Access {
  guildId: string;
  channels: Record<string, ChannelAccess>;
}

/** Every event type of the stream and its data. */
export interface EventMap {
  messageCreate: MessageCreate;
  messageUpdate: MessageUpdate;
  messageDelete: MessageDelete;
  reactionAdd: Reaction;
  reactionRemove: Reaction;
  typingStart: TypingStart;
  'voice.joined': VoiceJoined;
  'voice.left': VoiceLeft;
  'voice.snapshot': VoiceSnapshot;
  access: Access;
  'gateway.status': GatewayStatus;
  'stream.reset': StreamReset;
  error: StreamError;
}

export type EventType = keyof EventMap;

/** One stream event, discriminated by `type`. */
export type RelayEvent = { [K in EventType]: { type: K; data: EventMap[K]; meta: Meta } }[EventType];

/** The events that change a channel's message list. */
export type ChannelEvent =
  | { type: 'messageCreate'; data: MessageCreate; meta: Meta }
  | { type: 'messageUpdate'; data: MessageUpdate; meta: Meta }
  | { type: 'messageDelete'; data: MessageDelete; meta: Meta }
  | { type: 'reactionAdd'; data: Reaction; meta: Meta }
  | { type: 'reactionRemove'; data: Reaction; meta: Meta };

export type StreamState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Link (`gateway.status`; null until known) and stream state. */
export interface Status {
  connected: boolean | null;
  stream: StreamState;
}

export interface CommandResult {
  ok: true;
  requestId: string;
  traceId: string;
  /** The link was down: the edge queued the command (HTTP 202). */
  queued?: boolean;
}

export interface Issue {
  path: (string | number)[];
  message: string;
}

/** `GET /api/channels/{id}/messages` parameters; at most one of before/after/around. */
export type HistoryQuery = { limit?: number } & (
  | { before?: string; after?: undefined; around?: undefined }
  | { after?: string; before?: undefined; around?: undefined }
  | { around?: string; before?: undefined; after?: undefined }
);

/** After `stream.reset`: one watched channel's history, refetched. */
export interface Resync {
  channelId: string;
  reason: 'gap' | 'epoch';
  /** Newest first, as history returns them; empty when `error` is set. */
  messages: Message[];
  /** Live message events of this channel that arrived after the reset while the fetch ran, in order: apply them on top of `messages`. */
  events: ChannelEvent[];
  /** The refetch failed; the view keeps what it has. */
  error?: unknown;
}

/** After `stream.reset`, once every watched channel was refetched (or failed). */
export interface ResetComplete {
  reason: 'gap' | 'epoch';
  channels: string[];
  failed: string[];
}

/** The client's own notifications, beside the stream's events. */
export interface ClientEventMap {
  'relay.status': Status;
  'relay.voiceMembers': ReadonlyMap<string, readonly VoiceMember[]>;
  'relay.resync': Resync;
  'relay.resetComplete': ResetComplete;
}
