// React bindings: one RelayClient per provider, hooks over it. React is a peer
// dependency; nothing here opens a second EventSource under StrictMode (the
// provider holds the client with retain/release, which survives the
// unmount/remount StrictMode does) or leaves a listener behind after unmount.

import {
  createContext, createElement, useCallback, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore,
} from 'react';
import type { ReactNode } from 'react';

import { RelayClient } from './client.js';
import type { RelayOptions } from './client.js';
import { VoiceDropoutWatcher } from './dropout.js';
import type { DropoutOptions, DropoutState } from './dropout.js';
import { ChannelFeed } from './feed.js';
import type { FeedOptions, FeedState } from './feed.js';
import type { Access, Can, EventType, RelayEvent, Status, VoiceMember } from './types.js';

const RelayContext = createContext<RelayClient | null>(null);

export interface RelayProviderProps {
  /** A client made by the app (the provider then neither creates nor closes one)… */
  client?: RelayClient;
  /** …or the options of the client the provider creates. A new `baseUrl` or `token` makes a new client. */
  options?: RelayOptions;
  children?: ReactNode;
}

/** Makes one RelayClient available to the hooks below it and keeps its stream open while mounted. */
export function RelayProvider({ client, options, children }: RelayProviderProps) {
  const key = client ? '' : `${options?.baseUrl ?? ''}\n${options?.token ?? ''}`;
  // Creating a client opens nothing (autoConnect: false), so a discarded render costs nothing.
  const owned = useMemo(() => (client ? null : new RelayClient({ ...options, autoConnect: false })), [client, key]);
  const value = client ?? owned!;
  useEffect(() => {
    value.retain();
    return () => value.release();
  }, [value]);
  return createElement(RelayContext.Provider, { value }, children);
}

/** The provider's client. */
export function useRelay(): RelayClient {
  const c = useContext(RelayContext);
  if (!c) throw new Error('useRelay: no <RelayProvider> above this component');
  return c;
}

/** Link and stream state. */
export function useRelayStatus(): Status {
  const c = useRelay();
  return useSyncExternalStore(
    useCallback((cb: () => void) => c.on('relay.status', cb), [c]),
    () => c.status,
    () => c.status,
  );
}

/**
 * Subscribes to events of `types` (optionally only those naming one of
 * `channels`). With `handler`, calls it for each event (the latest handler; no
 * resubscription when it changes) and never re-renders; without, returns the
 * latest matching event.
 */
export function useRelayEvents(
  types: readonly EventType[],
  channels?: readonly string[] | null,
  handler?: (event: RelayEvent) => void,
): RelayEvent | null {
  const c = useRelay();
  const [last, setLast] = useState<RelayEvent | null>(null);
  const ref = useRef(handler);
  ref.current = handler;
  const hasHandler = !!handler;
  const typesKey = types.join(',');
  const channelsKey = channels ? channels.join(',') : null;
  useEffect(() => {
    const only = channelsKey === null ? null : new Set(channelsKey.split(',').filter(Boolean));
    const offs = typesKey.split(',').filter(Boolean).map((type) =>
      c.on(type, (data: unknown, meta) => {
        if (only && data && typeof data === 'object' && 'channelId' in data && !only.has((data as { channelId: string }).channelId)) return;
        const ev = { type, data, meta } as RelayEvent;
        if (ref.current) ref.current(ev);
        else setLast(ev);
      }));
    return () => offs.forEach((off) => off());
  }, [c, typesKey, channelsKey]);
  return hasHandler ? null : last;
}

export interface ChannelMessages extends FeedState {
  /** Loads the page before the oldest message held (scroll-up). */
  loadOlder: () => Promise<void>;
}

const LOADING: FeedState = Object.freeze({ messages: Object.freeze([]), loading: true, loadingOlder: false, hasMore: true, error: null });
const NO_CHANNEL: FeedState = Object.freeze({ ...LOADING, loading: false, hasMore: false });

/**
 * One channel's messages, oldest first: the latest `limit` (50) on open, live
 * create/update/delete/reactions merged and de-duplicated by id, older pages
 * with `loadOlder()`, and replaced by a fresh page after `stream.reset`.
 */
export function useChannelMessages(channelId: string | null | undefined, options: FeedOptions = {}): ChannelMessages {
  const c = useRelay();
  const limit = options.limit ?? 50;
  const [held, setHeld] = useState<{ feed: ChannelFeed; state: FeedState } | null>(null);
  const feedRef = useRef<ChannelFeed | null>(null);
  useEffect(() => {
    if (!channelId) { setHeld(null); return undefined; }
    const feed = new ChannelFeed(c, channelId, { limit });
    feedRef.current = feed;
    const off = feed.subscribe((state) => setHeld({ feed, state }));
    feed.start();
    setHeld({ feed, state: feed.getState() });
    return () => {
      off();
      feed.stop();
      if (feedRef.current === feed) feedRef.current = null;
    };
  }, [c, channelId, limit]);
  const loadOlder = useCallback(() => feedRef.current?.loadOlder() ?? Promise.resolve(), []);
  const state = !channelId ? NO_CHANNEL
    : held && held.feed.channelId === channelId && feedRef.current === held.feed ? held.state : LOADING;
  return useMemo(() => ({ ...state, loadOlder }), [state, loadOlder]);
}

const NO_MEMBERS: readonly VoiceMember[] = Object.freeze([]);

/** Who is in voice channel `channelId` now (snapshot, joins, leaves). */
export function useVoiceMembers(channelId: string | null | undefined): readonly VoiceMember[] {
  const c = useRelay();
  const get = () => (channelId ? c.voiceMembersOf(channelId) : NO_MEMBERS);
  return useSyncExternalStore(useCallback((cb: () => void) => c.on('relay.voiceMembers', cb), [c]), get, get);
}

export interface VoiceDropout extends DropoutState {
  /** Hides the modal until the next dropout. */
  dismiss: () => void;
  /** Moves the user back into `channelId` (the modal's Rejoin). */
  rejoin: () => Promise<unknown>;
}

const NO_DROPOUT: DropoutState = Object.freeze({ droppedOut: false, channelId: null, guildId: null, since: null });

/**
 * What the voice dropout modal needs: `droppedOut` turns true when `userId`
 * was in a voice channel and left it or was disconnected (not a move between
 * channels, not a leave this client asked for); false again on `dismiss()` or
 * when the user is back in voice.
 */
export function useVoiceDropout(userId: string | null | undefined, options: DropoutOptions = {}): VoiceDropout {
  const c = useRelay();
  const grace = options.moveGraceMs;
  const [held, setHeld] = useState<{ w: VoiceDropoutWatcher; state: DropoutState } | null>(null);
  const ref = useRef<VoiceDropoutWatcher | null>(null);
  useEffect(() => {
    if (!userId) { setHeld(null); return undefined; }
    const w = new VoiceDropoutWatcher(c, userId, { moveGraceMs: grace });
    ref.current = w;
    const off = w.subscribe((state) => setHeld({ w, state }));
    w.start();
    return () => {
      off();
      w.stop();
      if (ref.current === w) ref.current = null;
    };
  }, [c, userId, grace]);
  const dismiss = useCallback(() => ref.current?.dismiss(), []);
  const rejoin = useCallback(() => ref.current?.rejoin() ?? Promise.resolve(null), []);
  const state = held && held.w === ref.current && held.w.userId === userId ? held.state : NO_DROPOUT;
  return useMemo(() => ({ ...state, dismiss, rejoin }), [state, dismiss, rejoin]);
}

/**
 * The latest `access` event (ACCESS=discord) of `guildId`, or of any guild when
 * omitted; undefined until one arrives (and always under ACCESS=roles).
 */
export function useAccess(guildId?: string): Access | undefined {
  const c = useRelay();
  const get = () => (guildId ? c.access(guildId) : c.latestAccess());
  return useSyncExternalStore(useCallback((cb: () => void) => c.on('access', cb), [c]), get, get);
}

/** Whether `access` lets the member do `what` in `channelId` (true when there is no access event: ACCESS=roles). */
export function can(access: Access | undefined, channelId: string, what: Can): boolean {
  if (!access) return true;
  return !!access.channels[channelId]?.can.includes(what);
}
