import { createElement, type ReactNode } from 'react';
import { act, cleanup, configure, render, renderHook } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RelayClient } from '../src/index.js';
import type { RelayOptions } from '../src/index.js';
import {
  RelayProvider, can, useAccess, useChannelMessages, useRelay, useRelayEvents, useRelayStatus, useVoiceDropout, useVoiceMembers,
} from '../src/react.js';
import { FakeEventSource, deferredFetch, flush, msg, options } from './fakes.js';

// Every render below runs under StrictMode (double render, mount → unmount → mount),
// except where a test says `reactStrictMode: false`.
configure({ reactStrictMode: true });
beforeEach(() => FakeEventSource.reset());
afterEach(() => { cleanup(); vi.useRealTimers(); });

/** A wrapper with a provider that makes its own client, and a way to reach that client. */
function providerWith(opts: RelayOptions) {
  const box: { client: RelayClient | null } = { client: null };
  const Grab = ({ children }: { children?: ReactNode }) => { box.client = useRelay(); return children ?? null; };
  const wrapper = ({ children }: { children?: ReactNode }) =>
    createElement(RelayProvider, { options: opts }, createElement(Grab, null, children));
  return { wrapper, box };
}

const es = () => FakeEventSource.last;
const send = (type: string, data: unknown, id = '') => act(() => es().send(type, data, id));

describe('RelayProvider', () => {
  it('opens exactly one EventSource under StrictMode and closes it after unmount', async () => {
    const { wrapper, box } = providerWith(options());
    const { unmount } = renderHook(() => useRelayStatus(), { wrapper });
    await act(flush);
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(es().closed).toBe(false);
    const client = box.client!;
    unmount();
    await flush();
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(es().closed).toBe(true);
    expect(client.listenerCount()).toBe(0);
  });

  it('uses a client it is given and does not close one the app connected', async () => {
    const client = new RelayClient(options());
    const wrapper = ({ children }: { children?: ReactNode }) => createElement(RelayProvider, { client }, children);
    const { result, unmount } = renderHook(() => useRelay(), { wrapper });
    expect(result.current).toBe(client);
    unmount();
    await flush();
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(es().closed).toBe(false);
  });

  it('useRelay outside a provider says so', () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(() => renderHook(() => useRelay())).toThrow(/RelayProvider/);
  });

  it('works without StrictMode too', async () => {
    const { wrapper, box } = providerWith(options());
    const { unmount } = renderHook(() => useVoiceMembers('1'), { wrapper, reactStrictMode: false });
    expect(FakeEventSource.instances).toHaveLength(1);
    const client = box.client!;
    unmount();
    await flush();
    expect(es().closed).toBe(true);
    expect(client.listenerCount()).toBe(0);
  });

  it('useRelayStatus follows gateway.status', async () => {
    const { wrapper } = providerWith(options());
    const { result } = renderHook(() => useRelayStatus(), { wrapper });
    act(() => es().open());
    send('gateway.status', { connected: true });
    expect(result.current).toEqual({ connected: true, stream: 'open' });
  });
});

describe('useRelayEvents', () => {
  it('returns the latest matching event, filtered by type and channel', () => {
    const { wrapper } = providerWith(options());
    const { result } = renderHook(() => useRelayEvents(['typingStart', 'messageCreate'], ['10']), { wrapper });
    expect(result.current).toBeNull();
    send('typingStart', { channelId: '10', userId: '7', timestamp: 't' });
    expect(result.current).toMatchObject({ type: 'typingStart', data: { userId: '7' } });
    send('typingStart', { channelId: '11', userId: '8', timestamp: 't' });
    send('reactionAdd', { channelId: '10', messageId: '1', userId: '9', emoji: { id: null, name: 'x' } });
    expect(result.current).toMatchObject({ data: { userId: '7' } });
  });

  it('calls the latest handler without re-subscribing, and cleans up (StrictMode too)', async () => {
    const { wrapper, box } = providerWith(options());
    const seen: string[] = [];
    const { rerender, unmount, result } = renderHook(({ tag }) => useRelayEvents(['voice.joined'], null, (ev) => seen.push(tag + ev.type)), { wrapper, initialProps: { tag: 'a:' } });
    send('voice.joined', { guildId: '1', channelId: '20', userId: '7' });
    rerender({ tag: 'b:' });
    send('voice.joined', { guildId: '1', channelId: '20', userId: '8' });
    expect(seen).toEqual(['a:voice.joined', 'b:voice.joined']);
    expect(result.current).toBeNull();
    expect(FakeEventSource.instances).toHaveLength(1);
    const client = box.client!;
    unmount();
    await flush();
    expect(client.listenerCount()).toBe(0);
  });
});

describe('useChannelMessages', () => {
  it('history on open, live merge, loadOlder, and a refetch after stream.reset', async () => {
    const f = deferredFetch();
    const { wrapper } = providerWith(options({ fetch: f }));
    const { result } = renderHook(() => useChannelMessages('10', { limit: 2 }), { wrapper });
    expect(result.current.loading).toBe(true);
    await act(flush);
    expect(f.pending[0].call.url).toBe('/api/channels/10/messages?limit=2');
    await act(async () => { f.pending[0].resolve({ status: 200, body: { messages: [msg(9), msg(8)] } }); await flush(); });
    expect(result.current.messages.map((m) => m.id)).toEqual(['8', '9']);
    send('messageCreate', msg(10), '1-1');
    send('messageCreate', msg(10), '1-1');
    expect(result.current.messages.map((m) => m.id)).toEqual(['8', '9', '10']);
    let older!: Promise<void>;
    act(() => { older = result.current.loadOlder(); });
    expect(f.pending[1].call.url).toBe('/api/channels/10/messages?limit=2&before=8');
    await act(async () => { f.pending[1].resolve({ status: 200, body: { messages: [msg(7)] } }); await older; });
    expect(result.current.messages.map((m) => m.id)).toEqual(['7', '8', '9', '10']);
    expect(result.current.hasMore).toBe(false);
    send('stream.reset', { reason: 'gap' });
    expect(result.current.loading).toBe(true);
    await act(flush);
    expect(f.pending[2].call.url).toBe('/api/channels/10/messages?limit=2');
    await act(async () => { f.pending[2].resolve({ status: 200, body: { messages: [msg(12), msg(11)] } }); await flush(); });
    expect(result.current.messages.map((m) => m.id)).toEqual(['11', '12']);
    expect(result.current.loading).toBe(false);
  });

  it('no channel: nothing to load', () => {
    const { wrapper } = providerWith(options());
    const { result } = renderHook(() => useChannelMessages(null), { wrapper });
    expect(result.current).toMatchObject({ messages: [], loading: false, hasMore: false });
  });

  it('switching channel shows the new channel only', async () => {
    const f = deferredFetch();
    const { wrapper } = providerWith(options({ fetch: f }));
    const { result, rerender } = renderHook(({ id }) => useChannelMessages(id), { wrapper, initialProps: { id: '10' } });
    await act(async () => { await flush(); f.pending[0].resolve({ status: 200, body: { messages: [msg(1)] } }); await flush(); });
    rerender({ id: '11' });
    expect(result.current.messages).toEqual([]);
    await act(async () => { await flush(); f.pending[1].resolve({ status: 200, body: { messages: [msg(2, '11')] } }); await flush(); });
    expect(result.current.messages.map((m) => m.id)).toEqual(['2']);
  });

  it('StrictMode: one EventSource; unmount leaves no listener and no watched channel', async () => {
    const f = deferredFetch();
    const { wrapper, box } = providerWith(options({ fetch: f }));
    const { unmount } = renderHook(() => useChannelMessages('10'), { wrapper });
    await act(flush);
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(f.pending).toHaveLength(1); // the StrictMode remount asks for history once
    const client = box.client!;
    expect(client.watchedChannels()).toEqual(['10']);
    unmount();
    await flush();
    expect(client.listenerCount()).toBe(0);
    expect(client.watchedChannels()).toEqual([]);
    expect(es().closed).toBe(true);
  });
});

describe('useVoiceMembers', () => {
  it('follows snapshot, joins and leaves; StrictMode-safe and cleaned up', async () => {
    const { wrapper, box } = providerWith(options());
    const { result, unmount } = renderHook(() => useVoiceMembers('20'), { wrapper });
    expect(result.current).toEqual([]);
    send('voice.snapshot', { channels: { 20: [{ guildId: '1', userId: '7', username: 'ana', avatar: null }] } });
    expect(result.current.map((m) => m.userId)).toEqual(['7']);
    const before = result.current;
    send('voice.joined', { guildId: '1', channelId: '21', userId: '8' });
    expect(result.current).toBe(before); // another channel: same array, no re-render churn
    send('voice.joined', { guildId: '1', channelId: '20', userId: '8' });
    send('voice.left', { guildId: '1', channelId: '20', userId: '7' });
    expect(result.current.map((m) => m.userId)).toEqual(['8']);
    expect(FakeEventSource.instances).toHaveLength(1);
    const client = box.client!;
    unmount();
    await flush();
    expect(client.listenerCount()).toBe(0);
  });
});

describe('useVoiceDropout', () => {
  it('what the dropout modal needs: droppedOut, channelId, since, dismiss', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    vi.setSystemTime(5_000);
    const { wrapper, box } = providerWith(options({ fetch: deferredFetch() }));
    const { result, unmount } = renderHook(() => useVoiceDropout('7'), { wrapper });
    act(() => es().send('voice.snapshot', { channels: { 20: [{ guildId: '1', userId: '7' }] } }));
    act(() => es().send('voice.left', { guildId: '1', channelId: '20', userId: '7' }));
    expect(result.current.droppedOut).toBe(false);
    act(() => { vi.advanceTimersByTime(1500); });
    expect(result.current).toMatchObject({ droppedOut: true, channelId: '20', guildId: '1', since: 5_000 });
    act(() => result.current.dismiss());
    expect(result.current.droppedOut).toBe(false);
    // A move is no dropout.
    act(() => es().send('voice.joined', { guildId: '1', channelId: '20', userId: '7' }));
    act(() => { es().send('voice.left', { guildId: '1', channelId: '20', userId: '7' }); es().send('voice.joined', { guildId: '1', channelId: '21', userId: '7' }); });
    act(() => { vi.advanceTimersByTime(3000); });
    expect(result.current.droppedOut).toBe(false);
    expect(FakeEventSource.instances).toHaveLength(1);
    const client = box.client!;
    unmount();
    act(() => { vi.advanceTimersByTime(10); });
    expect(client.listenerCount()).toBe(0);
    expect(es().closed).toBe(true);
  });
});

describe('useAccess', () => {
  it('the latest access of a guild, or of any', async () => {
    const { wrapper, box } = providerWith(options());
    const { result, unmount } = renderHook(() => [useAccess('1'), useAccess()] as const, { wrapper });
    expect(result.current).toEqual([undefined, undefined]);
    const a1 = { guildId: '1', channels: { 10: { name: 'general', type: 0, parentId: null, can: ['view', 'send'] } } };
    const a2 = { guildId: '2', channels: {} };
    send('access', a1);
    send('access', a2);
    expect(result.current[0]).toEqual(a1);
    expect(result.current[1]).toEqual(a2);
    expect(can(result.current[0], '10', 'send')).toBe(true);
    expect(can(result.current[0], '10', 'react')).toBe(false);
    expect(can(undefined, '10', 'react')).toBe(true);
    const client = box.client!;
    unmount();
    await flush();
    expect(client.listenerCount()).toBe(0);
  });
});

describe('a whole component', () => {
  it('renders a channel and its voice members from one stream', async () => {
    const f = deferredFetch();
    function Room() {
      const { messages } = useChannelMessages('10');
      const members = useVoiceMembers('20');
      return createElement('div', null, createElement('ul', { 'data-testid': 'msgs' }, messages.map((m) => createElement('li', { key: m.id }, m.content))), createElement('p', null, members.length + ' in voice'));
    }
    const view = render(createElement(RelayProvider, { options: options({ fetch: f }) }, createElement(Room)));
    await act(async () => { await flush(); for (const p of f.pending) p.resolve({ status: 200, body: { messages: [msg(1, '10', 'hello')] } }); await flush(); });
    send('voice.snapshot', { channels: { 20: [{ guildId: '1', userId: '7' }] } });
    expect(view.getByTestId('msgs').textContent).toBe('hello');
    expect(view.getByText('1 in voice')).toBeTruthy();
    expect(FakeEventSource.instances).toHaveLength(1);
  });
});
