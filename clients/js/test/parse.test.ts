import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, parseEvent } from '../src/index.js';
import type { RelayEvent } from '../src/index.js';

const env = (event: string, data: unknown) => JSON.stringify({ version: '1.0', event, data, meta: { traceId: 'tr', sentAt: '2025-01-01T00:00:00.000Z' } });

const SAMPLES: Record<string, unknown> = {
  messageCreate: { id: '1', channelId: '10', guildId: '1', author: { id: '7', username: 'ana', avatar: null, bot: false }, content: 'hi', timestamp: 't', via: 'relay' },
  messageUpdate: { id: '1', channelId: '10', guildId: '1', content: 'hey', editedTimestamp: 't2' },
  messageDelete: { id: '1', channelId: '10', guildId: '1' },
  reactionAdd: { channelId: '10', messageId: '1', userId: '7', emoji: { id: null, name: '👍' } },
  reactionRemove: { channelId: '10', messageId: '1', userId: '7', emoji: { id: '55', name: 'party' } },
  typingStart: { channelId: '10', userId: '7', timestamp: 't' },
  'voice.joined': { guildId: '1', channelId: '20', userId: '7', username: 'ana', avatar: null },
  'voice.left': { guildId: '1', channelId: '20', userId: '7' },
  'voice.snapshot': { channels: { 20: [{ guildId: '1', userId: '7', username: 'ana', avatar: null }] } },
  access: { guildId: '1', channels: { 10: { name: 'general', type: 0, parentId: null, can: ['view', 'send'] } } },
  'gateway.status': { connected: true },
  'stream.reset': { reason: 'gap' },
  error: { code: 'malformed_frame', message: 'bad' },
};

describe('parseEvent', () => {
  it('knows every type of the contract (§4, §8, §9)', () => {
    expect([...EVENT_TYPES].sort()).toEqual(Object.keys(SAMPLES).sort());
  });

  for (const [type, data] of Object.entries(SAMPLES)) {
    it(`reads ${type} with its data and meta`, () => {
      const r = parseEvent(type, env(type, data), type.startsWith('message') ? '5-9' : undefined);
      expect(r).not.toBeNull();
      expect(r!.known).toBe(true);
      expect(r!.event.type).toBe(type);
      expect(r!.event.data).toEqual(data);
      expect(r!.event.meta.traceId).toBe('tr');
      expect(r!.event.meta.sentAt).toBe('2025-01-01T00:00:00.000Z');
      if (type.startsWith('message')) expect(r!.event.meta.id).toBe('5-9');
    });
  }

  it('narrows by type (compile-time check)', () => {
    const r = parseEvent('messageCreate', env('messageCreate', SAMPLES.messageCreate));
    if (r?.known) {
      const ev: RelayEvent = r.event;
      if (ev.type === 'messageCreate') expect(ev.data.via).toBe('relay');
      else throw new Error('wrong type');
    }
  });

  it('names an unnamed frame by its envelope', () => {
    const r = parseEvent('message', env('typingStart', SAMPLES.typingStart));
    expect(r?.event.type).toBe('typingStart');
  });

  it('drops text that is not JSON, and events missing what their type needs', () => {
    expect(parseEvent('messageCreate', 'not json')).toBeNull();
    expect(parseEvent('messageCreate', '[1,2]')).toBeNull();
    expect(parseEvent('messageCreate', env('messageCreate', { id: '1' }))).toBeNull();
    expect(parseEvent('gateway.status', env('gateway.status', { connected: 'yes' }))).toBeNull();
    expect(parseEvent('stream.reset', env('stream.reset', { reason: 'other' }))).toBeNull();
    expect(parseEvent('reactionAdd', env('reactionAdd', { channelId: '1', messageId: '2', userId: '3' }))).toBeNull();
  });

  it('passes unknown types through untyped', () => {
    const r = parseEvent('futureThing', env('futureThing', { x: 1 }));
    expect(r).toEqual({ known: false, event: { type: 'futureThing', data: { x: 1 }, meta: { traceId: 'tr', sentAt: '2025-01-01T00:00:00.000Z' } } });
  });

  it('reads an old voice.left without channelId as null', () => {
    const r = parseEvent('voice.left', env('voice.left', { guildId: '1', userId: '7' }));
    expect(r?.event.data).toEqual({ guildId: '1', userId: '7', channelId: null });
  });

  it('accepts a bare payload without an envelope', () => {
    const r = parseEvent('gateway.status', JSON.stringify({ connected: false }));
    expect(r?.event.data).toEqual({ connected: false });
  });
});
