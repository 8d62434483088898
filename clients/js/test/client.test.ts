import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RelayClient } from '../src/index.js';
import type { Resync, ResetComplete, Status } from '../src/index.js';
import { FakeEventSource, deferredFetch, flush, memoryStorage, msg, options } from './fakes.js';

beforeEach(() => FakeEventSource.reset());
afterEach(() => vi.useRealTimers());

describe('the stream', () => {
  it('opens one EventSource with token, filters and the kept id', () => {
    const storage = memoryStorage({ 'relay.lastEventId:http://localhost:3000': '7-41' });
    const c = new RelayClient(options({ token: 'jwt', types: ['messageCreate'], channels: ['10', '11'], storage }));
    expect(FakeEventSource.instances).toHaveLength(1);
    const q = FakeEventSource.last.query;
    expect(FakeEventSource.last.url.startsWith('/api/stream?')).toBe(true);
    expect(q.get('access_token')).toBe('jwt');
    expect(q.get('types')).toBe('messageCreate');
    expect(q.get('channels')).toBe('10,11');
    expect(q.get('lastEventId')).toBe('7-41');
    expect(FakeEventSource.last.withCredentials).toBe(false);
    expect(c.lastEventId).toBe('7-41');
  });

  it('cross-origin: baseUrl and withCredentials, resume key per baseUrl', () => {
    const storage = memoryStorage({ 'relay.lastEventId:https://relay.example.com': '3-3', 'relay.lastEventId:http://localhost:3000': '9-9' });
    new RelayClient(options({ baseUrl: 'https://relay.example.com', storage }));
    expect(FakeEventSource.last.url).toBe('https://relay.example.com/api/stream?lastEventId=3-3');
    expect(FakeEventSource.last.withCredentials).toBe(true);
  });

  it('keeps the last event id, clears it on stream.reset, and honours resume: false', () => {
    const storage = memoryStorage({ 'relay.lastEventId:http://localhost:3000': '1-1' });
    const c = new RelayClient(options({ storage, resume: false }));
    expect(FakeEventSource.last.query.get('lastEventId')).toBeNull();
    const es = FakeEventSource.last;
    es.send('typingStart', { channelId: '10', userId: '7', timestamp: 't' }, '4-10');
    expect(c.lastEventId).toBe('4-10');
    expect(storage.map.get('relay.lastEventId:http://localhost:3000')).toBe('4-10');
    es.send('voice.snapshot', { channels: {} }); // no id: unchanged
    expect(c.lastEventId).toBe('4-10');
    es.send('stream.reset', { reason: 'epoch' });
    expect(c.lastEventId).toBe('');
    expect(storage.map.get('relay.lastEventId:http://localhost:3000')).toBe('');
  });

  it('hands typed data and meta to handlers, and everything to "*"', () => {
    const c = new RelayClient(options());
    const seen: unknown[] = [];
    c.onMessage((d, meta) => seen.push(['msg', d.content, d.via, meta.id, meta.traceId]));
    c.on('reactionRemove', (d) => seen.push(['rr', d.emoji.name]));
    c.on('*', (ev) => seen.push(['*', ev.type]));
    const es = FakeEventSource.last;
    es.send('messageCreate', msg('1'), '1-1', { traceId: 'abc', sentAt: 's' });
    es.send('reactionRemove', { channelId: '10', messageId: '1', userId: '7', emoji: { id: null, name: '👍' } }, '1-2');
    es.raw('messageCreate', '{broken');
    expect(seen).toEqual([['msg', 'm1', undefined, '1-1', 'abc'], ['*', 'messageCreate'], ['rr', '👍'], ['*', 'reactionRemove']]);
  });

  it('unsubscribes cleanly', () => {
    const c = new RelayClient(options());
    const fn = vi.fn();
    const off = c.on('typingStart', fn);
    expect(c.listenerCount()).toBe(1);
    off();
    off();
    expect(c.listenerCount()).toBe(0);
    FakeEventSource.last.send('typingStart', { channelId: '1', userId: '2', timestamp: 't' });
    expect(fn).not.toHaveBeenCalled();
  });

  it('tracks gateway.status and the stream state', () => {
    const c = new RelayClient(options());
    const states: Status[] = [];
    c.onStatus((s) => states.push(s));
    FakeEventSource.last.open();
    FakeEventSource.last.send('gateway.status', { connected: true });
    FakeEventSource.last.send('gateway.status', { connected: false });
    expect(states).toEqual([
      { connected: null, stream: 'connecting' },
      { connected: null, stream: 'open' },
      { connected: true, stream: 'open' },
      { connected: false, stream: 'open' },
    ]);
    c.close();
    expect(c.status.stream).toBe('closed');
    expect(FakeEventSource.last.closed).toBe(true);
  });

  it('keeps voice state from snapshot, joins and leaves, by identity', () => {
    const c = new RelayClient(options());
    const es = FakeEventSource.last;
    es.send('voice.snapshot', { channels: { 20: [{ guildId: '1', userId: '7', username: 'ana', avatar: null }], 21: [] } });
    const first = c.voiceState();
    expect(c.voiceMembers('20').map((m) => m.userId)).toEqual(['7']);
    expect(c.voiceState().has('21')).toBe(false);
    const ch21 = c.voiceMembersOf('20');
    es.send('voice.joined', { guildId: '1', channelId: '21', userId: '8', username: 'bo', avatar: null });
    expect(c.voiceState()).not.toBe(first);
    expect(c.voiceMembersOf('20')).toBe(ch21); // unchanged channel keeps its array
    es.send('voice.joined', { guildId: '1', channelId: '21', userId: '7', username: 'ana', avatar: null }); // a move
    expect(c.voiceMembers('20')).toEqual([]);
    expect(c.voiceMembers('21').map((m) => m.userId)).toEqual(['8', '7']);
    expect(c.voiceChannelOf('7')).toEqual({ channelId: '21', guildId: '1' });
    es.send('voice.left', { guildId: '1', channelId: '21', userId: '8' });
    expect(c.voiceMembers('21').map((m) => m.userId)).toEqual(['7']);
  });

  it('keeps the latest access per guild', () => {
    const c = new RelayClient(options());
    const a = { guildId: '1', channels: { 10: { name: 'general', type: 0, parentId: null, can: ['view'] } } };
    FakeEventSource.last.send('access', a);
    expect(c.access('1')).toEqual(a);
    expect(c.latestAccess()).toEqual(a);
    const seen: unknown[] = [];
    c.onAccess((x) => seen.push(x));
    expect(seen).toEqual([a]);
  });

  it('retries with backoff when the browser gives up, resuming from the last id', () => {
    vi.useFakeTimers();
    const c = new RelayClient(options());
    FakeEventSource.last.send('typingStart', { channelId: '1', userId: '2', timestamp: 't' }, '5-5');
    FakeEventSource.last.fail(false); // the browser retries by itself
    expect(c.status.stream).toBe('reconnecting');
    expect(FakeEventSource.instances).toHaveLength(1);
    FakeEventSource.last.fail(true);
    vi.advanceTimersByTime(1300);
    expect(FakeEventSource.instances).toHaveLength(2);
    expect(FakeEventSource.last.query.get('lastEventId')).toBe('5-5');
    expect(FakeEventSource.live).toHaveLength(1);
  });

  it('SSE `event: error` frames are events, not connection failures', () => {
    const c = new RelayClient(options());
    const errs: unknown[] = [];
    c.onError((d) => errs.push(d.code));
    FakeEventSource.last.open();
    FakeEventSource.last.send('error', { code: 'malformed_frame', message: 'x' });
    expect(errs).toEqual(['malformed_frame']);
    expect(c.status.stream).toBe('open');
  });
});

describe('retain / release', () => {
  it('StrictMode-style release then retain keeps the one EventSource', async () => {
    const c = new RelayClient(options({ autoConnect: false }));
    expect(FakeEventSource.instances).toHaveLength(0);
    expect(c.status.stream).toBe('idle');
    c.retain();
    c.release();
    c.retain();
    await flush();
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(FakeEventSource.last.closed).toBe(false);
    c.release();
    await flush();
    expect(FakeEventSource.last.closed).toBe(true);
    expect(c.status.stream).toBe('closed');
  });

  it('connect() pins the stream open across releases', async () => {
    const c = new RelayClient(options());
    c.retain();
    c.release();
    await flush();
    expect(FakeEventSource.last.closed).toBe(false);
    c.close();
  });
});

describe('stream.reset refetches watched channels', () => {
  it('fetches each watched channel and hands over history plus the events that came meanwhile', async () => {
    const f = deferredFetch();
    const c = new RelayClient(options({ fetch: f }));
    const offA = c.watchChannel('10');
    c.watchChannel('11', { limit: 30 });
    c.watchChannel('10'); // counted
    offA();
    const resyncs: Resync[] = [];
    const done: ResetComplete[] = [];
    const order: string[] = [];
    c.onReset(() => order.push('reset'));
    c.on('relay.resync', (r) => { resyncs.push(r); order.push('resync:' + r.channelId); });
    c.on('relay.resetComplete', (r) => { done.push(r); order.push('complete'); });
    const es = FakeEventSource.last;
    es.send('stream.reset', { reason: 'gap' });
    await flush();
    expect(f.pending.map((p) => p.call.url).sort()).toEqual(['/api/channels/10/messages?limit=50', '/api/channels/11/messages?limit=30']);
    // Live events during the fetch: kept for the watched channel, not for others.
    es.send('messageCreate', msg('300', '10'), '2-1');
    es.send('messageCreate', msg('301', '99'), '2-2');
    f.pending.find((p) => p.call.url.includes('/10/'))!.resolve({ status: 200, body: { messages: [msg('299', '10'), msg('298', '10')] } });
    f.pending.find((p) => p.call.url.includes('/11/'))!.resolve({ status: 404, body: { error: { code: 'not_found', message: 'no' } } });
    await flush();
    expect(order).toEqual(['reset', 'resync:10', 'resync:11', 'complete']);
    const r10 = resyncs.find((r) => r.channelId === '10')!;
    expect(r10.messages.map((m) => m.id)).toEqual(['299', '298']);
    expect(r10.events.map((e) => e.data.channelId + ':' + (e.data as { id: string }).id)).toEqual(['10:300']);
    expect(resyncs.find((r) => r.channelId === '11')!.error).toMatchObject({ status: 404 });
    expect(done).toEqual([{ reason: 'gap', channels: ['10', '11'], failed: ['11'] }]);
  });

  it('a second reset while fetching supersedes the first', async () => {
    const f = deferredFetch();
    const c = new RelayClient(options({ fetch: f }));
    c.watchChannel('10');
    const complete = vi.fn();
    c.on('relay.resetComplete', complete);
    FakeEventSource.last.send('stream.reset', { reason: 'gap' });
    FakeEventSource.last.send('stream.reset', { reason: 'epoch' });
    await flush();
    expect(f.pending).toHaveLength(2);
    f.pending[0].resolve({ status: 200, body: { messages: [] } });
    await flush();
    expect(complete).not.toHaveBeenCalled();
    f.pending[1].resolve({ status: 200, body: { messages: [] } });
    await flush();
    expect(complete).toHaveBeenCalledWith({ reason: 'epoch', channels: ['10'], failed: [] });
  });

  it('with nothing watched, completes at once', async () => {
    const c = new RelayClient(options());
    const complete = vi.fn();
    c.on('relay.resetComplete', complete);
    FakeEventSource.last.send('stream.reset', { reason: 'epoch' });
    await flush();
    expect(complete).toHaveBeenCalledWith({ reason: 'epoch', channels: [], failed: [] });
  });
});
