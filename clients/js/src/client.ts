// relay browser client — one EventSource for every realtime Discord event, plus
// the JSON command API and history. Dependency-free ES module.
//
//   import { RelayClient } from '/client/relay.js';
//   const relay = new RelayClient();             // same origin, relay_session cookie
//   relay.onMessage((msg, meta) => …);
//   await relay.sendMessage(channelId, 'hi');    // throws RelayError on 4xx/5xx
//
// Resuming: while the page lives, EventSource itself resends `Last-Event-ID` on
// every reconnect. A page reload starts a new EventSource that knows nothing, so
// the client keeps the last event id in sessionStorage (per tab, per baseUrl) and
// passes it as the `lastEventId` query parameter when it opens the stream; the
// edge then replays everything after it, or sends `stream.reset` if it can't.
// Then the client refetches the history of every watched channel
// (`watchChannel`, used by `ChannelFeed` and `useChannelMessages`) by itself and
// emits `relay.resync` per channel and `relay.resetComplete`.

import { RelayError, errorFromResponse } from './errors.js';
import { EVENT_TYPES, parseEvent } from './parse.js';
import type {
  Access, ChannelEvent, ClientEventMap, CommandResult, EventMap, EventType, HistoryQuery, Message, Meta,
  RelayEvent, Status, StreamReset, VoiceJoined, VoiceLeft, VoiceMember, VoiceSnapshot,
} from './types.js';

export interface RelayOptions {
  /** Origin of the edge (`https://relay.example.com`); '' (default) = same origin. */
  baseUrl?: string;
  /** Session JWT; without it the `relay_session` cookie is used. */
  token?: string;
  /** Only these event types (plus `gateway.status`, `voice.snapshot`, `stream.reset`), filtered by the edge. */
  types?: string[];
  /** Only events of these channel ids, filtered by the edge. */
  channels?: string[];
  /** Resume from the id kept in sessionStorage after a reload (default true). */
  resume?: boolean;
  /** Send cookies cross-origin (EventSource `withCredentials`, fetch `credentials: 'include'`). Default: true when `baseUrl` is set. */
  withCredentials?: boolean;
  /** Open the stream in the constructor (default true). `RelayProvider` passes false and opens it in an effect. */
  autoConnect?: boolean;
  /** Messages refetched per watched channel after `stream.reset` (default 50). */
  historyLimit?: number;
  /** For tests and non-browser hosts. */
  fetch?: typeof fetch;
  EventSource?: typeof EventSource;
  /** Where the last event id is kept; null = nowhere (default: sessionStorage). */
  storage?: Pick<Storage, 'getItem' | 'setItem'> | null;
}

type Handler = (data: any, meta?: Meta) => void;
type AnyEvent = { type: string; data: unknown };

const EMPTY: readonly VoiceMember[] = Object.freeze([]);
/** How long a `moveMember` of this client makes the user's next voice change deliberate. */
const OWN_MOVE_MS = 10_000;
const CHANNEL_EVENTS = new Set<string>(['messageCreate', 'messageUpdate', 'messageDelete', 'reactionAdd', 'reactionRemove']);

export class RelayClient {
  readonly baseUrl: string;
  readonly token: string | undefined;
  readonly types: string[] | undefined;
  readonly channels: string[] | undefined;
  readonly withCredentials: boolean;
  /** The id of the last event received (`<epoch>-<seq>`), '' before any. */
  lastEventId = '';
  /** Link and stream state; a new object on every change. */
  status: Status;

  private readonly _handlers = new Map<string, Set<Handler>>();
  private _voice: ReadonlyMap<string, readonly VoiceMember[]> = new Map();
  private _access: ReadonlyMap<string, Access> = new Map();
  private _latestAccess: Access | undefined;
  private _es: EventSource | null = null;
  private _retryMs = 1000;
  private _retryTimer: ReturnType<typeof setTimeout> | undefined;
  private _releaseTimer: ReturnType<typeof setTimeout> | undefined;
  private _closed = false;
  private _pinned = false;
  private _refs = 0;
  private readonly _storageKey: string;
  private readonly _storage: Pick<Storage, 'getItem' | 'setItem'> | null;
  private readonly _fetchImpl: typeof fetch | undefined;
  private readonly _esImpl: typeof EventSource | undefined;
  private readonly _historyLimit: number;
  private readonly _watched = new Map<string, { count: number; limit: number }>();
  private _resetGen = 0;
  private _resyncBuffers: Map<string, ChannelEvent[]> | null = null;
  private readonly _ownMoves = new Map<string, number>();

  constructor(options: RelayOptions = {}) {
    this.baseUrl = (options.baseUrl || '').replace(/\/+$/, '');
    this.token = options.token;
    this.types = options.types;
    this.channels = options.channels;
    this.withCredentials = options.withCredentials ?? !!this.baseUrl;
    this._fetchImpl = options.fetch;
    this._esImpl = options.EventSource;
    this._historyLimit = options.historyLimit ?? 50;
    this._storage = options.storage === undefined ? defaultStorage() : options.storage;
    const origin = typeof location !== 'undefined' ? location.origin : '';
    this._storageKey = 'relay.lastEventId:' + (this.baseUrl || origin);
    if (options.resume !== false) this.lastEventId = this._read();
    const autoConnect = options.autoConnect !== false;
    this.status = { connected: null, stream: autoConnect ? 'connecting' : 'idle' };
    if (autoConnect) this.connect();
  }

  // ---- connection ----------------------------------------------------------

  /** Opens the stream (if it is not open) and keeps it open until `close()`. */
  connect(): void {
    this._pinned = true;
    this._closed = false;
    this._ensureOpen();
  }

  /**
   * Holds the stream open for one user (a provider, a component); `release()`
   * undoes it. When the last holder releases and nobody called `connect()`, the
   * stream closes on the next task — so React StrictMode's unmount/remount keeps
   * the one EventSource it has.
   */
  retain(): void {
    this._refs++;
    clearTimeout(this._releaseTimer);
    this._releaseTimer = undefined;
    this._closed = false;
    this._ensureOpen();
  }

  release(): void {
    if (this._refs === 0) return;
    this._refs--;
    if (this._refs > 0 || this._pinned) return;
    clearTimeout(this._releaseTimer);
    this._releaseTimer = setTimeout(() => {
      this._releaseTimer = undefined;
      if (this._refs === 0 && !this._pinned) this._shutdown();
    }, 0);
  }

  /** Closes the stream; handlers stay registered but are not called until the stream is opened again. */
  close(): void {
    this._pinned = false;
    this._refs = 0;
    clearTimeout(this._releaseTimer);
    this._releaseTimer = undefined;
    this._shutdown();
  }

  // ---- subscriptions -------------------------------------------------------

  /**
   * Calls `fn(data, meta)` for every event of `type`; `'*'` gets `({type, data}, meta)`
   * for every event; `relay.*` are the client's own notifications.
   * @returns unsubscribe
   */
  on<K extends EventType>(type: K, fn: (data: EventMap[K], meta: Meta) => void): () => void;
  on<K extends keyof ClientEventMap>(type: K, fn: (data: ClientEventMap[K]) => void): () => void;
  on(type: '*', fn: (event: AnyEvent, meta: Meta) => void): () => void;
  on(type: string, fn: (data: any, meta: Meta) => void): () => void;
  on(type: string, fn: (data: any, meta: any) => void): () => void {
    let set = this._handlers.get(type);
    if (!set) {
      this._handlers.set(type, (set = new Set()));
      if (this._es && isStreamType(type) && !(EVENT_TYPES as readonly string[]).includes(type)) this._listen(this._es, type);
    }
    const handlers = set;
    handlers.add(fn);
    return () => {
      handlers.delete(fn);
      if (handlers.size === 0 && this._handlers.get(type) === handlers) this._handlers.delete(type);
    };
  }

  onMessage(fn: (data: EventMap['messageCreate'], meta: Meta) => void) { return this.on('messageCreate', fn); }
  onMessageUpdate(fn: (data: EventMap['messageUpdate'], meta: Meta) => void) { return this.on('messageUpdate', fn); }
  onMessageDelete(fn: (data: EventMap['messageDelete'], meta: Meta) => void) { return this.on('messageDelete', fn); }
  onReaction(fn: (data: EventMap['reactionAdd'], meta: Meta) => void) { return this.on('reactionAdd', fn); }
  onReactionRemove(fn: (data: EventMap['reactionRemove'], meta: Meta) => void) { return this.on('reactionRemove', fn); }
  onTyping(fn: (data: EventMap['typingStart'], meta: Meta) => void) { return this.on('typingStart', fn); }
  onVoiceJoined(fn: (data: EventMap['voice.joined'], meta: Meta) => void) { return this.on('voice.joined', fn); }
  onVoiceLeft(fn: (data: EventMap['voice.left'], meta: Meta) => void) { return this.on('voice.left', fn); }
  /** SSE `error` events: gateway error frames and `malformed_frame`. */
  onError(fn: (data: EventMap['error'], meta: Meta) => void) { return this.on('error', fn); }
  /** `stream.reset` `{reason}`: events were missed; watched channels are refetched by the client. */
  onReset(fn: (data: StreamReset, meta: Meta) => void) { return this.on('stream.reset', fn); }
  /** Link and stream state; called at once with the current state, then on every change. */
  onStatus(fn: (status: Status) => void) { fn({ ...this.status }); return this.on('relay.status', fn); }
  /** Voice membership after every snapshot/join/leave; called at once with the current state. */
  onVoiceMembers(fn: (byChannel: Map<string, VoiceMember[]>) => void) {
    fn(this.voiceChannels());
    return this.on('relay.voiceMembers', () => fn(this.voiceChannels()));
  }
  /**
   * `access` events (ACCESS=discord): every channel the member may view in a guild and
   * what they may do there. Called at once for every guild already known.
   */
  onAccess(fn: (access: Access, meta?: Meta) => void) {
    for (const a of this._access.values()) fn(a);
    return this.on('access', fn);
  }

  /** The latest `access` of `guildId`, if one arrived. */
  access(guildId: string): Access | undefined { return this._access.get(guildId); }
  /** The latest `access` event of any guild. */
  latestAccess(): Access | undefined { return this._latestAccess; }
  /** Members of one voice channel (a copy). */
  voiceMembers(channelId: string): VoiceMember[] { return [...(this._voice.get(channelId) || [])]; }
  /** A copy: channel id → members. */
  voiceChannels(): Map<string, VoiceMember[]> { return new Map([...this._voice].map(([id, m]) => [id, [...m]])); }
  /** The voice state itself: a new (frozen) map on every change, so it can be compared by identity. */
  voiceState(): ReadonlyMap<string, readonly VoiceMember[]> { return this._voice; }
  /** Members of one voice channel; the same array until that channel changes. */
  voiceMembersOf(channelId: string): readonly VoiceMember[] { return this._voice.get(channelId) ?? EMPTY; }
  /** The voice channel `userId` is in, as far as this client knows. */
  voiceChannelOf(userId: string): { channelId: string; guildId: string } | null {
    for (const [channelId, list] of this._voice) {
      const m = list.find((x) => x.userId === userId);
      if (m) return { channelId, guildId: m.guildId };
    }
    return null;
  }
  /** Whether this client moved or disconnected `userId` in the last 10 s (not yet followed by a join). */
  movedByThisClient(userId: string, withinMs = OWN_MOVE_MS): boolean {
    const at = this._ownMoves.get(userId);
    return at !== undefined && Date.now() - at <= withinMs;
  }

  /**
   * Marks a channel as shown: after `stream.reset` the client refetches its latest
   * `limit` messages and emits `relay.resync`. Counted; call the returned function once.
   */
  watchChannel(channelId: string, opts: { limit?: number } = {}): () => void {
    const w = this._watched.get(channelId);
    const limit = opts.limit ?? this._historyLimit;
    if (w) { w.count++; w.limit = Math.max(w.limit, limit); } else this._watched.set(channelId, { count: 1, limit });
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const cur = this._watched.get(channelId);
      if (cur && --cur.count <= 0) this._watched.delete(channelId);
    };
  }

  /** Channels with at least one watcher. */
  watchedChannels(): string[] { return [...this._watched.keys()]; }

  /** Registered handlers, all types together (for leak checks). */
  listenerCount(): number {
    let n = 0;
    for (const set of this._handlers.values()) n += set.size;
    return n;
  }

  // ---- commands and history ------------------------------------------------

  sendMessage(channelId: string, content: string): Promise<CommandResult> {
    return this._post('/api/send-message', { channelId, content });
  }
  /** `emoji`: unicode, or `name:id` for a custom one. */
  addReaction(channelId: string, messageId: string, emoji: string): Promise<CommandResult> {
    return this._post('/api/add-reaction', { channelId, messageId, emoji });
  }
  typingStart(channelId: string): Promise<CommandResult> {
    return this._post('/api/typing-start', { channelId });
  }
  /** `channelId` null disconnects the member from voice. */
  async moveMember(guildId: string, userId: string, channelId: string | null): Promise<CommandResult> {
    const at = Date.now();
    this._ownMoves.set(userId, at);
    try {
      return await this._post('/api/voice/move-member', { guildId, userId, channelId });
    } catch (err) {
      if (this._ownMoves.get(userId) === at) this._ownMoves.delete(userId);
      throw err;
    }
  }
  muteMember(guildId: string, userId: string, mute: boolean): Promise<CommandResult> {
    return this._post('/api/voice/mute-member', { guildId, userId, mute });
  }

  /**
   * `GET /api/channels/{id}/messages`: newest first. `limit` 1–100 (default 50);
   * at most one of `before`, `after`, `around`.
   */
  async fetchMessages(channelId: string, query: HistoryQuery = {}): Promise<Message[]> {
    const q = new URLSearchParams();
    const anchors = (['before', 'after', 'around'] as const).filter((k) => query[k] !== undefined);
    if (anchors.length > 1) throw new RelayError(400, 'invalid_request', 'use at most one of before, after, around');
    q.set('limit', String(query.limit ?? 50));
    for (const k of anchors) q.set(k, String(query[k]));
    const json = await this._request('GET', `/api/channels/${encodeURIComponent(channelId)}/messages?${q}`);
    const list = json && typeof json === 'object' && Array.isArray((json as { messages?: unknown }).messages)
      ? (json as { messages: unknown[] }).messages : [];
    // The page is as of this window revision: live events at or below it are in it.
    const rev = json && typeof json === 'object' ? (json as { rev?: unknown }).rev : undefined;
    const asOf = typeof rev === 'number' && Number.isSafeInteger(rev) ? { rev } : {};
    return list.filter(isMessageLike).map((m) => ({ ...m, reactions: Array.isArray(m.reactions) ? m.reactions : [], ...asOf }));
  }

  // ---- internals -----------------------------------------------------------

  private async _post(path: string, body: object): Promise<CommandResult> {
    const { status, json } = await this._send('POST', path, body);
    const j = (json ?? {}) as Partial<CommandResult>;
    const out: CommandResult = { ok: true, requestId: j.requestId ?? '', traceId: j.traceId ?? '' };
    if (j.queued || status === 202) out.queued = true;
    return out;
  }

  private async _request(method: string, path: string): Promise<unknown> {
    return (await this._send(method, path)).json;
  }

  private async _send(method: string, path: string, body?: object): Promise<{ status: number; json: unknown }> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (body) headers['Content-Type'] = 'application/json';
    if (this.token) headers.Authorization = 'Bearer ' + this.token;
    const f = this._fetchImpl ?? globalThis.fetch;
    let res: Response;
    try {
      res = await f.call(globalThis, this.baseUrl + path, {
        method, headers, body: body ? JSON.stringify(body) : undefined,
        credentials: this.withCredentials ? 'include' : 'same-origin',
      });
    } catch (err) {
      throw new RelayError(0, 'network_error', 'relay is unreachable: ' + ((err as Error)?.message || String(err)));
    }
    let json: unknown = null;
    try { json = await res.json(); } catch { /* not JSON: keep null */ }
    if (res.status >= 200 && res.status < 300) return { status: res.status, json };
    throw errorFromResponse(res.status, res.statusText, json, res.headers);
  }

  private _ensureOpen(): void {
    if (!this._es && this._retryTimer === undefined) this._open();
  }

  private _shutdown(): void {
    this._closed = true;
    this._resetGen++;
    this._resyncBuffers = null;
    clearTimeout(this._retryTimer);
    this._retryTimer = undefined;
    if (this._es) this._es.close();
    this._es = null;
    this._setStatus({ stream: 'closed' });
  }

  /** Opens the (single) EventSource. */
  private _open(): void {
    const q = new URLSearchParams();
    if (this.token) q.set('access_token', this.token);
    if (this.types && this.types.length) q.set('types', this.types.join(','));
    if (this.channels && this.channels.length) q.set('channels', this.channels.join(','));
    // The browser sends the Last-Event-ID header on its own reconnects (it wins over this).
    if (this.lastEventId) q.set('lastEventId', this.lastEventId);
    const qs = q.toString();
    const ES = this._esImpl ?? globalThis.EventSource;
    const es = new ES(this.baseUrl + '/api/stream' + (qs ? '?' + qs : ''), this.withCredentials ? { withCredentials: true } : undefined);
    this._es = es;
    this._setStatus({ stream: this.status.stream === 'reconnecting' ? 'reconnecting' : 'connecting' });
    es.addEventListener('open', () => {
      if (es !== this._es) return;
      this._retryMs = 1000;
      this._setStatus({ stream: 'open' });
    });
    for (const type of new Set<string>([...EVENT_TYPES, ...this._handlers.keys()])) {
      if (isStreamType(type)) this._listen(es, type);
    }
    es.addEventListener('message', (e) => this._dispatch(es, e as MessageEvent, 'message'));
  }

  private _listen(es: EventSource, type: string): void {
    es.addEventListener(type, (e) => {
      // EventSource fires its own `error` (a plain Event) for connection failures;
      // SSE `event: error` frames arrive as MessageEvents with data.
      if (type === 'error' && typeof (e as MessageEvent).data !== 'string') return this._connectionError(es);
      this._dispatch(es, e as MessageEvent, type);
    });
  }

  private _connectionError(es: EventSource): void {
    if (es !== this._es || this._closed) return;
    this._setStatus({ stream: 'reconnecting', connected: null });
    if (es.readyState === 2 /* CLOSED */) {
      // The browser gave up (HTTP error, wrong content type): retry ourselves with backoff.
      es.close();
      this._es = null;
      clearTimeout(this._retryTimer);
      this._retryTimer = setTimeout(() => {
        this._retryTimer = undefined;
        if (!this._closed) this._open();
      }, this._retryMs * (0.8 + Math.random() * 0.4));
      this._retryMs = Math.min(this._retryMs * 2, 30000);
    }
  }

  private _dispatch(es: EventSource, e: MessageEvent, name: string): void {
    if (this._closed || es !== this._es) return;
    if (e.lastEventId && e.lastEventId !== this.lastEventId) {
      this.lastEventId = e.lastEventId;
      this._write(e.lastEventId);
    }
    const parsed = parseEvent(name, String(e.data), e.lastEventId || undefined);
    if (!parsed) return;
    if (!parsed.known) {
      this._emit(parsed.event.type, parsed.event.data, parsed.event.meta);
      this._emit('*', { type: parsed.event.type, data: parsed.event.data }, parsed.event.meta);
      return;
    }
    this._apply(parsed.event);
  }

  /** Feeds one parsed event through the client (state, resync, handlers). Public for tests and custom transports. */
  _apply(ev: RelayEvent): void {
    const { type, meta } = ev;
    let voiceChanged = false;
    switch (ev.type) {
      case 'gateway.status': this._setStatus({ connected: ev.data.connected }); break;
      case 'voice.snapshot': this._voiceSnapshot(ev.data); voiceChanged = true; break;
      case 'voice.joined': this._voiceJoined(ev.data); voiceChanged = true; break;
      case 'voice.left': this._voiceLeft(ev.data); voiceChanged = true; break;
      case 'access': {
        const next = new Map(this._access);
        next.set(ev.data.guildId, ev.data);
        this._access = next;
        this._latestAccess = ev.data;
        break;
      }
      case 'stream.reset': // the kept id is useless now; the next event's id replaces it
        this.lastEventId = '';
        this._write('');
        break;
      default:
        if (CHANNEL_EVENTS.has(type) && this._resyncBuffers) {
          this._resyncBuffers.get((ev.data as { channelId: string }).channelId)?.push(ev as ChannelEvent);
        }
    }
    this._emit(type, ev.data, meta);
    this._emit('*', { type, data: ev.data }, meta);
    if (voiceChanged) this._emit('relay.voiceMembers', this._voice);
    if (ev.type === 'voice.joined') this._ownMoves.delete(ev.data.userId);
    if (ev.type === 'stream.reset') this._refetchWatched(ev.data.reason);
  }

  /** After `stream.reset`: refetches every watched channel, then `relay.resync` each and `relay.resetComplete`. */
  private _refetchWatched(reason: 'gap' | 'epoch'): void {
    const gen = ++this._resetGen;
    const watched = [...this._watched];
    const buffers = new Map<string, ChannelEvent[]>(watched.map(([id]) => [id, []]));
    this._resyncBuffers = buffers;
    const failed: string[] = [];
    const one = async ([channelId, w]: [string, { limit: number }]) => {
      let messages: Message[] = [];
      let error: unknown;
      try { messages = await this.fetchMessages(channelId, { limit: w.limit }); } catch (err) { error = err; }
      if (gen !== this._resetGen) return;
      const events = buffers.get(channelId) ?? [];
      buffers.delete(channelId);
      if (error !== undefined) failed.push(channelId);
      this._emit('relay.resync', error !== undefined
        ? { channelId, reason, messages: [], events, error }
        : { channelId, reason, messages, events });
    };
    void Promise.all(watched.map(one)).then(() => {
      if (gen !== this._resetGen) return;
      this._resyncBuffers = null;
      this._emit('relay.resetComplete', { reason, channels: watched.map(([id]) => id), failed });
    });
  }

  private _emit(type: string, data: unknown, meta?: Meta): void {
    const set = this._handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try { if (meta === undefined) fn(data); else fn(data, meta); } catch (err) { setTimeout(() => { throw err; }); }
    }
  }

  private _setStatus(patch: Partial<Status>): void {
    const next = { ...this.status, ...patch };
    if (next.connected === this.status.connected && next.stream === this.status.stream) return;
    this.status = next;
    this._emit('relay.status', { ...next });
  }

  private _voiceSnapshot(data: VoiceSnapshot): void {
    const next = new Map<string, readonly VoiceMember[]>();
    for (const [id, members] of Object.entries(data.channels || {})) {
      if (Array.isArray(members) && members.length) next.set(id, Object.freeze(members.map((m) => ({ ...m }))));
    }
    this._voice = next;
  }

  private _voiceJoined(d: VoiceJoined): void {
    const next = this._withoutUser(d.userId);
    const list = next.get(d.channelId) || [];
    next.set(d.channelId, Object.freeze([...list, { guildId: d.guildId, userId: d.userId, username: d.username, avatar: d.avatar ?? null }]));
    this._voice = next;
  }

  private _voiceLeft(d: VoiceLeft): void { this._voice = this._withoutUser(d.userId); }

  private _withoutUser(userId: string): Map<string, readonly VoiceMember[]> {
    const next = new Map<string, readonly VoiceMember[]>();
    for (const [id, list] of this._voice) {
      const kept = list.some((m) => m.userId === userId) ? list.filter((m) => m.userId !== userId) : list;
      if (kept.length) next.set(id, kept === list ? list : Object.freeze(kept));
    }
    return next;
  }

  private _read(): string {
    try { return this._storage?.getItem(this._storageKey) || ''; } catch { return ''; }
  }

  private _write(value: string): void {
    try { this._storage?.setItem(this._storageKey, value); } catch { /* storage disabled: resume only within the page */ }
  }
}

/** Whether `type` names an SSE event (not the client's own `relay.*`/`*` channels, nor `message`). */
function isStreamType(type: string): boolean {
  return type !== '*' && type !== 'message' && !type.startsWith('relay.');
}

function isMessageLike(m: unknown): m is Message {
  return !!m && typeof m === 'object' && typeof (m as Message).id === 'string' && typeof (m as Message).channelId === 'string';
}

function defaultStorage(): Pick<Storage, 'getItem' | 'setItem'> | null {
  try { return typeof sessionStorage !== 'undefined' ? sessionStorage : null; } catch { return null; }
}
