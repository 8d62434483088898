// One channel's message list, kept up to date: history on start, live
// create/update/delete/reactions merged, older pages on demand, and a clean
// replacement after `stream.reset`. Framework-free; `useChannelMessages` wraps it.

import type { RelayClient } from './client.js';
import type { ChannelEvent, Emoji, Message, Resync } from './types.js';

export interface FeedState {
  /** Oldest first (ascending snowflake id), each id once. */
  messages: readonly Message[];
  /** The first page (or a refetch after `stream.reset`) is on its way. */
  loading: boolean;
  loadingOlder: boolean;
  /** Whether older messages may exist (the last page was full). */
  hasMore: boolean;
  /** The last history call's failure (a `RelayError` as a rule), cleared by the next success. */
  error: unknown;
}

export interface FeedOptions {
  /** Page size of the first page, of `loadOlder` and of the refetch after a reset (default 50). */
  limit?: number;
}

/** Orders snowflakes (decimal strings) numerically. */
export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

const emojiKey = (e: Emoji) => (e.id ? `${e.name ?? ''}:${e.id}` : e.name ?? '');

/** Whether `old` already reflects `ev`: both carry window revisions and the event's is not newer. */
function alreadyIn(old: Message | undefined, ev: ChannelEvent): boolean {
  const rev = ev.meta?.rev;
  return old?.rev !== undefined && rev !== undefined && rev <= old.rev;
}

/** The revision a message has once `ev` is applied to it. */
const revAfter = (ev: ChannelEvent) => (ev.meta?.rev !== undefined ? { rev: ev.meta.rev } : {});

/**
 * Applies one live event to a message map (in place). Returns whether anything changed.
 * An event a message's copy already reflects (its `rev` is at least the event's
 * `meta.rev`) changes nothing: a page fetched while it happened counts it already.
 */
export function applyChannelEvent(byId: Map<string, Message>, ev: ChannelEvent): boolean {
  switch (ev.type) {
    case 'messageCreate': {
      const old = byId.get(ev.data.id);
      if (alreadyIn(old, ev)) return false;
      byId.set(ev.data.id, { ...ev.data, reactions: old?.reactions ?? [], ...(old?.editedTimestamp ? { editedTimestamp: old.editedTimestamp } : {}), ...revAfter(ev) });
      return true;
    }
    case 'messageUpdate': {
      const old = byId.get(ev.data.id);
      if (!old || alreadyIn(old, ev)) return false;
      const next: Message = { ...old, ...revAfter(ev) };
      if (typeof ev.data.content === 'string') next.content = ev.data.content;
      if (ev.data.editedTimestamp !== undefined) next.editedTimestamp = ev.data.editedTimestamp;
      byId.set(old.id, next);
      return true;
    }
    case 'messageDelete':
      return byId.delete(ev.data.id);
    case 'reactionAdd':
    case 'reactionRemove': {
      const old = byId.get(ev.data.messageId);
      if (!old || alreadyIn(old, ev)) return false;
      const key = emojiKey(ev.data.emoji);
      const delta = ev.type === 'reactionAdd' ? 1 : -1;
      let found = false;
      const reactions = old.reactions
        .map((r) => {
          if (emojiKey(r.emoji) !== key) return r;
          found = true;
          return { ...r, count: r.count + delta };
        })
        .filter((r) => r.count > 0);
      if (!found && delta > 0) reactions.push({ emoji: { ...ev.data.emoji }, count: 1 });
      byId.set(old.id, { ...old, reactions, ...revAfter(ev) });
      return true;
    }
  }
}

export class ChannelFeed {
  readonly channelId: string;
  private readonly _client: RelayClient;
  private readonly _limit: number;
  private _byId = new Map<string, Message>();
  private _state: FeedState = { messages: [], loading: true, loadingOlder: false, hasMore: true, error: null };
  private readonly _listeners = new Set<(s: FeedState) => void>();
  private _offs: (() => void)[] = [];
  private _running = false;
  /** Bumped whenever a base list in flight becomes stale (reset, stop). */
  private _gen = 0;
  /** Live events since the first page was asked for; replayed on top of it. */
  private _buffer: ChannelEvent[] | null = null;
  /** Live events since an older page was asked for; replayed on its messages. */
  private _olderBuffer: ChannelEvent[] | null = null;

  constructor(client: RelayClient, channelId: string, options: FeedOptions = {}) {
    this._client = client;
    this.channelId = channelId;
    this._limit = options.limit ?? 50;
  }

  getState(): FeedState { return this._state; }

  subscribe(fn: (s: FeedState) => void): () => void {
    this._listeners.add(fn);
    return () => { this._listeners.delete(fn); };
  }

  /** Subscribes to the client, registers the channel for reset refetches, and loads the latest page. */
  start(): void {
    if (this._running) return;
    this._running = true;
    const c = this._client;
    const live = (ev: ChannelEvent) => {
      if (ev.data.channelId !== this.channelId) return;
      this._buffer?.push(ev);
      this._olderBuffer?.push(ev);
      if (applyChannelEvent(this._byId, ev)) this._publish({});
    };
    this._offs = [
      c.watchChannel(this.channelId, { limit: this._limit }),
      c.on('messageCreate', (data, meta) => live({ type: 'messageCreate', data, meta })),
      c.on('messageUpdate', (data, meta) => live({ type: 'messageUpdate', data, meta })),
      c.on('messageDelete', (data, meta) => live({ type: 'messageDelete', data, meta })),
      c.on('reactionAdd', (data, meta) => live({ type: 'reactionAdd', data, meta })),
      c.on('reactionRemove', (data, meta) => live({ type: 'reactionRemove', data, meta })),
      // The client refetches this channel by itself; until it answers, the list is stale.
      c.on('stream.reset', () => { this._gen++; this._buffer = null; this._olderBuffer = null; this._publish({ loading: true }); }),
      c.on('relay.resync', (r) => { if (r.channelId === this.channelId) this._resync(r); }),
    ];
    void this._loadLatest();
  }

  /** Unsubscribes everything; results still in flight are dropped. */
  stop(): void {
    if (!this._running) return;
    this._running = false;
    this._gen++;
    this._buffer = null;
    this._olderBuffer = null;
    for (const off of this._offs.splice(0)) off();
  }

  /** Loads the page before the oldest message held (scroll-up). */
  async loadOlder(): Promise<void> {
    const s = this._state;
    if (!this._running || s.loading || s.loadingOlder || !s.hasMore) return;
    const oldest = s.messages[0];
    if (!oldest) return this._loadLatest();
    const gen = this._gen;
    this._olderBuffer = [];
    this._publish({ loadingOlder: true });
    try {
      const page = await this._client.fetchMessages(this.channelId, { limit: this._limit, before: oldest.id });
      if (gen !== this._gen || !this._running) return;
      const added = new Map<string, Message>();
      for (const m of page) if (!this._byId.has(m.id)) added.set(m.id, m);
      // A reaction to one of these messages while the page was on its way was
      // dropped (the message was not held yet); those the page does not count
      // are applied now. Events on messages held before were applied live.
      // Only with revisions on both sides can it be known; without, as before.
      for (const ev of this._olderBuffer ?? []) {
        const target = ev.type === 'reactionAdd' || ev.type === 'reactionRemove' ? ev.data.messageId : ev.data.id;
        if (ev.meta?.rev !== undefined && added.get(target)?.rev !== undefined) applyChannelEvent(added, ev);
      }
      for (const [id, m] of added) this._byId.set(id, m);
      this._publish({ loadingOlder: false, hasMore: page.length >= this._limit, error: null });
    } catch (error) {
      if (gen !== this._gen || !this._running) return;
      this._publish({ loadingOlder: false, error });
    } finally {
      if (gen === this._gen) this._olderBuffer = null;
    }
  }

  private async _loadLatest(): Promise<void> {
    const gen = ++this._gen;
    this._buffer = [];
    this._publish({ loading: true });
    // One microtask later: a start/stop/start in one go (React StrictMode) asks once.
    await Promise.resolve();
    if (gen !== this._gen || !this._running) return;
    try {
      const page = await this._client.fetchMessages(this.channelId, { limit: this._limit });
      if (gen !== this._gen || !this._running) return;
      this._rebase(page, this._buffer ?? []);
      this._buffer = null;
      this._publish({ loading: false, hasMore: page.length >= this._limit, error: null });
    } catch (error) {
      if (gen !== this._gen || !this._running) return;
      this._buffer = null;
      this._publish({ loading: false, error });
    }
  }

  private _resync(r: Resync): void {
    if (!this._running) return;
    this._gen++;
    this._buffer = null;
    this._olderBuffer = null;
    if (r.error !== undefined) {
      for (const ev of r.events) applyChannelEvent(this._byId, ev);
      this._publish({ loading: false, error: r.error });
      return;
    }
    this._rebase(r.messages, r.events);
    this._publish({ loading: false, hasMore: r.messages.length >= this._limit, error: null });
  }

  /** The list becomes `page` plus the live events that arrived while it was fetched. */
  private _rebase(page: Message[], events: ChannelEvent[]): void {
    this._byId = new Map(page.map((m) => [m.id, m]));
    for (const ev of events) applyChannelEvent(this._byId, ev);
  }

  private _publish(patch: Partial<Omit<FeedState, 'messages'>>): void {
    const messages = [...this._byId.values()].sort((a, b) => compareIds(a.id, b.id));
    this._state = { ...this._state, ...patch, messages };
    for (const fn of [...this._listeners]) fn(this._state);
  }
}
