import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RelayClient, VoiceDropoutWatcher } from '../src/index.js';
import { FakeEventSource, fakeFetch, options } from './fakes.js';

beforeEach(() => { FakeEventSource.reset(); vi.useFakeTimers(); vi.setSystemTime(1_000_000); });
afterEach(() => vi.useRealTimers());

const me = { guildId: '1', userId: '7', username: 'ana', avatar: null };
function setup() {
  const f = fakeFetch(() => ({ status: 200, body: { ok: true, requestId: 'r', traceId: 't' } }));
  const c = new RelayClient(options({ fetch: f }));
  const es = FakeEventSource.last;
  es.send('voice.snapshot', { channels: { 20: [me] } });
  const w = new VoiceDropoutWatcher(c, '7');
  w.start();
  return { c, es, w, f };
}

describe('VoiceDropoutWatcher', () => {
  it('a disconnect is a dropout (after the move grace)', () => {
    const { es, w } = setup();
    es.send('voice.left', { guildId: '1', channelId: '20', userId: '7' });
    expect(w.getState().droppedOut).toBe(false);
    vi.advanceTimersByTime(1500);
    expect(w.getState()).toEqual({ droppedOut: true, channelId: '20', guildId: '1', since: 1_000_000 });
  });

  it('an old voice.left without channelId uses the channel the user was in', () => {
    const { es, w } = setup();
    es.send('voice.left', { guildId: '1', userId: '7' });
    vi.advanceTimersByTime(2000);
    expect(w.getState().channelId).toBe('20');
  });

  it('a move (left then joined) is no dropout', () => {
    const { es, w } = setup();
    es.send('voice.left', { guildId: '1', channelId: '20', userId: '7' });
    es.send('voice.joined', { ...me, channelId: '21' });
    vi.advanceTimersByTime(5000);
    expect(w.getState().droppedOut).toBe(false);
  });

  it('a leave this client asked for is no dropout; the next one is', async () => {
    const { c, es, w } = setup();
    await c.moveMember('1', '7', null);
    es.send('voice.left', { guildId: '1', channelId: '20', userId: '7' });
    vi.advanceTimersByTime(2000);
    expect(w.getState().droppedOut).toBe(false);
    es.send('voice.joined', { ...me, channelId: '20' }); // back (clears the mark)
    es.send('voice.left', { guildId: '1', channelId: '20', userId: '7' });
    vi.advanceTimersByTime(2000);
    expect(w.getState().droppedOut).toBe(true);
  });

  it('other users, and users not in voice, change nothing', () => {
    const { es, w } = setup();
    es.send('voice.left', { guildId: '1', channelId: '20', userId: '8' });
    vi.advanceTimersByTime(2000);
    expect(w.getState().droppedOut).toBe(false);
  });

  it('dismiss() closes it; rejoining clears it; rejoin() moves back', async () => {
    const { es, w, f } = setup();
    const states: boolean[] = [];
    w.subscribe((s) => states.push(s.droppedOut));
    es.send('voice.left', { guildId: '1', channelId: '20', userId: '7' });
    vi.advanceTimersByTime(2000);
    await w.rejoin();
    expect(f.calls[0].body).toEqual({ guildId: '1', userId: '7', channelId: '20' });
    es.send('voice.joined', { ...me, channelId: '20' });
    expect(w.getState().droppedOut).toBe(false);
    es.send('voice.left', { guildId: '1', channelId: '20', userId: '7' });
    vi.advanceTimersByTime(2000);
    w.dismiss();
    expect(states).toEqual([true, false, true, false]);
  });

  it('gone from the snapshot after a reconnect is a dropout', () => {
    const { es, w } = setup();
    es.send('voice.snapshot', { channels: {} });
    expect(w.getState()).toMatchObject({ droppedOut: true, channelId: '20' });
  });

  it('stop() leaves no listener and no timer', () => {
    const { c, es, w } = setup();
    es.send('voice.left', { guildId: '1', channelId: '20', userId: '7' });
    w.stop();
    expect(c.listenerCount()).toBe(0);
    vi.advanceTimersByTime(5000);
    expect(w.getState().droppedOut).toBe(false);
  });
});
