import { beforeEach, describe, expect, it } from 'vitest';
import { ChannelFeed, RelayClient, compareIds } from '../src/index.js';
import { FakeEventSource, deferredFetch, flush, msg, options } from './fakes.js';

beforeEach(() => FakeEventSource.reset());

const ids = (f: ChannelFeed) => f.getState().messages.map((m) => m.id);
const page = (...list: (string | number)[]) => ({ status: 200, body: { messages: list.map((id) => msg(id)) } });

function setup(limit = 3) {
  const f = deferredFetch();
  const c = new RelayClient(options({ fetch: f }));
  const feed = new ChannelFeed(c, '10', { limit });
  return { f, c, feed, es: FakeEventSource.last };
}

describe('ChannelFeed', () => {
  it('orders snowflakes numerically', () => {
    expect(['10', '9', '100', '11'].sort(compareIds)).toEqual(['9', '10', '11', '100']);
  });

  it('loads the latest page on start, oldest first', async () => {
    const { f, feed } = setup();
    feed.start();
    expect(feed.getState().loading).toBe(true);
    await flush();
    expect(f.pending[0].call.url).toBe('/api/channels/10/messages?limit=3');
    f.pending[0].resolve(page(9, 8, 7));
    await flush();
    expect(ids(feed)).toEqual(['7', '8', '9']);
    expect(feed.getState()).toMatchObject({ loading: false, hasMore: true, error: null });
  });

  it('merges live events: create (once), update, delete, reactions; ignores other channels', async () => {
    const { f, feed, es } = setup();
    feed.start();
    await flush();
    f.pending[0].resolve(page(9, 8));
    await flush();
    expect(feed.getState().hasMore).toBe(false);
    es.send('messageCreate', msg(10), '1-1');
    es.send('messageCreate', msg(10), '1-2'); // duplicate
    es.send('messageCreate', msg(11, '99'), '1-3'); // another channel
    es.send('messageUpdate', { id: '8', channelId: '10', guildId: '1', content: 'edited', editedTimestamp: 'e' });
    es.send('messageUpdate', { id: '404', channelId: '10', guildId: '1', content: 'unknown' });
    es.send('reactionAdd', { channelId: '10', messageId: '9', userId: '7', emoji: { id: null, name: '👍' } });
    es.send('reactionAdd', { channelId: '10', messageId: '9', userId: '8', emoji: { id: null, name: '👍' } });
    es.send('reactionAdd', { channelId: '10', messageId: '9', userId: '8', emoji: { id: '5', name: 'party' } });
    es.send('reactionRemove', { channelId: '10', messageId: '9', userId: '8', emoji: { id: '5', name: 'party' } });
    es.send('messageDelete', { id: '10', channelId: '10', guildId: '1' });
    const s = feed.getState();
    expect(s.messages.map((m) => m.id)).toEqual(['8', '9']);
    expect(s.messages[0]).toMatchObject({ content: 'edited', editedTimestamp: 'e' });
    expect(s.messages[1].reactions).toEqual([{ emoji: { id: null, name: '👍' }, count: 2 }]);
  });

  it('keeps events that arrive while the first page loads (no gap, no duplicate)', async () => {
    const { f, feed, es } = setup();
    feed.start();
    await flush();
    es.send('messageCreate', msg(10));
    es.send('messageCreate', msg(11));
    expect(ids(feed)).toEqual(['10', '11']); // shown at once
    f.pending[0].resolve(page(10, 9, 8)); // the page already has 10, not 11
    await flush();
    expect(ids(feed)).toEqual(['8', '9', '10', '11']);
  });

  it('a reaction the page already counts is not counted again (window revisions)', async () => {
    const { f, feed, es } = setup();
    feed.start();
    await flush();
    const meta = (rev: number) => ({ traceId: 't', sentAt: 's', rev });
    const like = (user: string) => ({ channelId: '10', messageId: '9', userId: user, emoji: { id: null, name: '👍' } });
    // Two reactions while the first page is on its way: the gateway's window
    // had the first (rev 101) when it answered at rev 101, not the second.
    es.send('reactionAdd', like('7'), '', meta(101));
    es.send('reactionAdd', like('8'), '', meta(102));
    f.pending[0].resolve({
      status: 200,
      body: { rev: 101, messages: [{ ...msg(9), reactions: [{ emoji: { id: null, name: '👍' }, count: 1 }] }, msg(8)] },
    });
    await flush();
    expect(feed.getState().messages[1].reactions).toEqual([{ emoji: { id: null, name: '👍' }, count: 2 }]);
    // A late copy of an event the page counts (the stream behind the HTTP answer) changes nothing.
    es.send('reactionRemove', like('7'), '', meta(100));
    expect(feed.getState().messages[1].reactions[0].count).toBe(2);
    es.send('reactionRemove', like('7'), '', meta(103));
    expect(feed.getState().messages[1].reactions[0].count).toBe(1);
  });

  it('a reaction to an older message made while its page loads is applied once', async () => {
    const { f, feed, es } = setup();
    feed.start();
    await flush();
    f.pending[0].resolve({ status: 200, body: { rev: 50, messages: [msg(9), msg(8), msg(7)] } });
    await flush();
    const older = feed.loadOlder();
    const like = (rev: number) => es.send('reactionAdd', { channelId: '10', messageId: '5', userId: String(rev), emoji: { id: null, name: '🔥' } }, '', { traceId: 't', sentAt: 's', rev });
    like(60); // before the window answered: in the page
    like(61); // after: not in it
    f.pending[1].resolve({
      status: 200,
      body: { rev: 60, messages: [msg(6), { ...msg(5), reactions: [{ emoji: { id: null, name: '🔥' }, count: 1 }] }] },
    });
    await older;
    const five = feed.getState().messages.find((m) => m.id === '5');
    expect(five?.reactions).toEqual([{ emoji: { id: null, name: '🔥' }, count: 2 }]);
    expect(five?.rev).toBe(61);
  });

  it('loadOlder pages backwards until a short page', async () => {
    const { f, feed } = setup();
    feed.start();
    await flush();
    f.pending[0].resolve(page(9, 8, 7));
    await flush();
    const p = feed.loadOlder();
    expect(feed.getState().loadingOlder).toBe(true);
    void feed.loadOlder(); // ignored while one runs
    expect(f.pending).toHaveLength(2);
    expect(f.pending[1].call.url).toBe('/api/channels/10/messages?limit=3&before=7');
    f.pending[1].resolve(page(7, 6)); // overlapping id 7 stays once
    await p;
    expect(ids(feed)).toEqual(['6', '7', '8', '9']);
    expect(feed.getState()).toMatchObject({ hasMore: false, loadingOlder: false });
    await feed.loadOlder();
    expect(f.pending).toHaveLength(2);
  });

  it('after stream.reset, the client refetches and the feed replaces its list', async () => {
    const { f, feed, es } = setup();
    feed.start();
    await flush();
    f.pending[0].resolve(page(9, 8, 7));
    await flush();
    const older = feed.loadOlder();
    f.pending[1].resolve(page(6));
    await older;
    expect(ids(feed)).toEqual(['6', '7', '8', '9']);
    es.send('stream.reset', { reason: 'gap' });
    expect(feed.getState().loading).toBe(true);
    await flush();
    expect(f.pending[2].call.url).toBe('/api/channels/10/messages?limit=3');
    es.send('messageCreate', msg(13)); // arrives during the refetch
    f.pending[2].resolve(page(12, 11, 9)); // 8 was deleted meanwhile, 10–12 were missed
    await flush();
    expect(ids(feed)).toEqual(['9', '11', '12', '13']);
    expect(feed.getState()).toMatchObject({ loading: false, hasMore: true });
  });

  it('a failed refetch keeps the list and reports the error', async () => {
    const { f, feed, es } = setup();
    feed.start();
    await flush();
    f.pending[0].resolve(page(9));
    await flush();
    es.send('stream.reset', { reason: 'epoch' });
    await flush();
    f.pending[1].resolve({ status: 502, body: { error: { code: 'gateway_error', message: 'x' } } });
    await flush();
    expect(ids(feed)).toEqual(['9']);
    expect(feed.getState().error).toMatchObject({ status: 502 });
  });

  it('stop() drops results in flight and every listener', async () => {
    const { f, c, feed } = setup();
    feed.start();
    expect(c.listenerCount()).toBeGreaterThan(0);
    expect(c.watchedChannels()).toEqual(['10']);
    await flush();
    feed.stop();
    expect(c.listenerCount()).toBe(0);
    expect(c.watchedChannels()).toEqual([]);
    f.pending[0].resolve(page(1));
    await flush();
    expect(ids(feed)).toEqual([]);
  });
});
