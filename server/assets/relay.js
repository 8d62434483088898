// relay browser client — one EventSource for every realtime Discord event, plus
// the JSON command API. Dependency-free ES module, no build step.
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
// edge then replays everything after it (or sends `stream.reset` if it can't).
// Pass `resume: false` to start fresh.

/** @typedef {{traceId: string, sentAt: string, id?: string}} Meta  `id`: the stream's last event id when this event arrived */
/** @typedef {{guildId: string, userId: string, username?: string, avatar?: string|null}} VoiceMember */
/** @typedef {'connecting'|'open'|'reconnecting'|'closed'} StreamState */
/** @typedef {{connected: boolean|null, stream: StreamState}} Status */
/** @typedef {{ok: true, requestId: string, traceId: string, queued?: boolean}} CommandResult */
/** @typedef {{path: (string|number)[], message: string}} Issue */
/**
 * What the member may do in one channel (`access` events, ACCESS=discord).
 * @typedef {'view'|'history'|'send'|'react'|'connect'|'moveMembers'|'muteMembers'} Can
 * @typedef {{name: string, type: number, parentId: string|null, can: Can[]}} ChannelAccess
 * @typedef {{guildId: string, channels: Record<string, ChannelAccess>}} Access
 */
/**
 * @typedef {object} RelayOptions
 * @property {string} [baseUrl] origin of the edge; '' (default) = same origin
 * @property {string} [token] session JWT; without it the relay_session cookie is used
 * @property {string[]} [types] only these event types (plus gateway.status, voice.snapshot, stream.reset)
 * @property {string[]} [channels] only events of these channel ids
 * @property {boolean} [resume] resume from the id kept in sessionStorage after a reload (default true)
 */

/** Event types the client listens for without being asked. */
const KNOWN_TYPES = ['messageCreate', 'messageUpdate', 'messageDelete', 'reactionAdd', 'typingStart',
  'voice.joined', 'voice.left', 'voice.snapshot', 'access', 'gateway.status', 'stream.reset', 'error'];

/** A command the edge refused; `status` is the HTTP status (0 = network failure). */
export class RelayError extends Error {
  /**
   * @param {number} status
   * @param {string} code e.g. invalid_request, unauthenticated, forbidden, missing_permission, rate_limited, queue_full,
   *   gateway_error, gateway_timeout, payload_too_large, network_error
   * @param {string} message
   * @param {{issues?: Issue[], retryAfterMs?: number|null, permission?: string|null}} [extra]
   */
  constructor(status, code, message, extra = {}) {
    super(message);
    this.name = 'RelayError';
    this.status = status;
    this.code = code;
    /** @type {Issue[]} */
    this.issues = extra.issues || [];
    /** @type {number|null} */
    this.retryAfterMs = extra.retryAfterMs ?? null;
    /** The Discord permission missing (`code` missing_permission), e.g. SEND_MESSAGES. @type {string|null} */
    this.permission = extra.permission ?? null;
  }
}

export class RelayClient {
  /** @param {RelayOptions} [options] */
  constructor(options = {}) {
    this.baseUrl = (options.baseUrl || '').replace(/\/$/, '');
    this.token = options.token;
    this.types = options.types;
    this.channels = options.channels;
    /** The id of the last event received (`<epoch>-<seq>`), '' before any. */
    this.lastEventId = '';
    /** @type {Status} */
    this.status = { connected: null, stream: 'connecting' };
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    /** @type {Map<string, VoiceMember[]>} */
    this._voice = new Map();
    /** @type {Map<string, Access>} guild id → the latest `access` event */
    this._access = new Map();
    /** @type {EventSource|null} */
    this._es = null;
    this._retryMs = 1000;
    this._retryTimer = 0;
    this._closed = false;
    this._storageKey = 'relay.lastEventId:' + (this.baseUrl || location.origin);
    if (options.resume !== false) this.lastEventId = readStorage(this._storageKey);
    this._open();
  }

  // ---- subscriptions -------------------------------------------------------

  /**
   * Calls `fn(data, meta)` for every event of `type` (any SSE event name; `'*'` gets
   * `({type, data}, meta)` for every event).
   * @param {string} type
   * @param {(data: any, meta: Meta) => void} fn
   * @returns {() => void} unsubscribe
   */
  on(type, fn) {
    let set = this._handlers.get(type);
    if (!set) {
      this._handlers.set(type, (set = new Set()));
      if (this._es && isStreamType(type) && !KNOWN_TYPES.includes(type)) this._listen(this._es, type);
    }
    set.add(fn);
    return () => set.delete(fn);
  }

  /** @param {(data: any, meta: Meta) => void} fn */ onMessage(fn) { return this.on('messageCreate', fn); }
  /** @param {(data: any, meta: Meta) => void} fn */ onMessageUpdate(fn) { return this.on('messageUpdate', fn); }
  /** @param {(data: any, meta: Meta) => void} fn */ onMessageDelete(fn) { return this.on('messageDelete', fn); }
  /** @param {(data: any, meta: Meta) => void} fn */ onReaction(fn) { return this.on('reactionAdd', fn); }
  /** @param {(data: any, meta: Meta) => void} fn */ onTyping(fn) { return this.on('typingStart', fn); }
  /** @param {(data: any, meta: Meta) => void} fn */ onVoiceJoined(fn) { return this.on('voice.joined', fn); }
  /** @param {(data: any, meta: Meta) => void} fn */ onVoiceLeft(fn) { return this.on('voice.left', fn); }
  /** SSE `error` events: gateway error frames and `malformed_frame`. @param {(data: any, meta: Meta) => void} fn */
  onError(fn) { return this.on('error', fn); }
  /** `stream.reset` `{reason: 'gap'|'epoch'}`: events were missed. @param {(data: any, meta: Meta) => void} fn */
  onReset(fn) { return this.on('stream.reset', fn); }
  /**
   * Link and stream state; called at once with the current state, then on every change.
   * @param {(status: Status) => void} fn
   */
  onStatus(fn) { fn({ ...this.status }); return this.on('relay.status', fn); }
  /**
   * Voice membership after every snapshot/join/leave; called at once with the current state.
   * @param {(byChannel: Map<string, VoiceMember[]>) => void} fn
   */
  onVoiceMembers(fn) { fn(this.voiceChannels()); return this.on('relay.voiceMembers', fn); }

  /**
   * `access` events (ACCESS=discord): every channel the member may view in a guild and
   * what they may do there, after each voice snapshot and again whenever it changes.
   * Called at once for every guild already known. Never called under ACCESS=roles.
   * @param {(access: Access, meta?: Meta) => void} fn
   */
  onAccess(fn) { for (const a of this._access.values()) fn(a); return this.on('access', fn); }
  /** The latest `access` of `guildId`, if one arrived. @param {string} guildId @returns {Access|undefined} */
  access(guildId) { return this._access.get(guildId); }

  /** @param {string} channelId @returns {VoiceMember[]} */
  voiceMembers(channelId) { return [...(this._voice.get(channelId) || [])]; }
  /** @returns {Map<string, VoiceMember[]>} a copy, channel id → members */
  voiceChannels() { return new Map([...this._voice].map(([id, m]) => [id, [...m]])); }

  // ---- commands ------------------------------------------------------------

  /** @param {string} channelId @param {string} content @returns {Promise<CommandResult>} */
  sendMessage(channelId, content) { return this._post('/api/send-message', { channelId, content }); }
  /** @param {string} channelId @param {string} messageId @param {string} emoji unicode or `name:id` */
  addReaction(channelId, messageId, emoji) { return this._post('/api/add-reaction', { channelId, messageId, emoji }); }
  /** @param {string} channelId */
  typingStart(channelId) { return this._post('/api/typing-start', { channelId }); }
  /** @param {string} guildId @param {string} userId @param {string|null} channelId null disconnects */
  moveMember(guildId, userId, channelId) { return this._post('/api/voice/move-member', { guildId, userId, channelId }); }
  /** @param {string} guildId @param {string} userId @param {boolean} mute */
  muteMember(guildId, userId, mute) { return this._post('/api/voice/mute-member', { guildId, userId, mute }); }

  /** Closes the stream for good; handlers stay registered but are no longer called. */
  close() {
    this._closed = true;
    clearTimeout(this._retryTimer);
    if (this._es) this._es.close();
    this._es = null;
    this._setStatus({ stream: 'closed' });
  }

  // ---- internals -----------------------------------------------------------

  /** @param {string} path @param {object} body @returns {Promise<CommandResult>} */
  async _post(path, body) {
    /** @type {Record<string, string>} */
    const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    if (this.token) headers.Authorization = 'Bearer ' + this.token;
    let res;
    try {
      res = await fetch(this.baseUrl + path, {
        method: 'POST', headers, body: JSON.stringify(body), credentials: 'same-origin',
      });
    } catch (err) {
      throw new RelayError(0, 'network_error', 'relay is unreachable: ' + (err && err.message || err));
    }
    /** @type {any} */
    let json = null;
    try { json = await res.json(); } catch { /* not JSON: fall through with null */ }
    if (res.status === 200 || res.status === 202) {
      const out = { ok: true, requestId: json?.requestId, traceId: json?.traceId };
      if (json?.queued || res.status === 202) out.queued = true;
      return /** @type {CommandResult} */ (out);
    }
    const err = json?.error || {};
    let retryAfterMs = typeof json?.retryAfterMs === 'number' ? json.retryAfterMs : null;
    if (retryAfterMs === null && res.status === 429) {
      const secs = Number(res.headers.get('Retry-After'));
      if (Number.isFinite(secs) && secs >= 0) retryAfterMs = secs * 1000;
    }
    throw new RelayError(res.status, err.code || codeFor(res.status), err.message || res.statusText || 'request failed',
      { issues: Array.isArray(json?.issues) ? json.issues : [], retryAfterMs,
        permission: typeof err.permission === 'string' ? err.permission : null });
  }

  /** Opens the (single) EventSource. */
  _open() {
    const q = new URLSearchParams();
    if (this.token) q.set('access_token', this.token);
    if (this.types && this.types.length) q.set('types', this.types.join(','));
    if (this.channels && this.channels.length) q.set('channels', this.channels.join(','));
    // The browser sends the Last-Event-ID header on its own reconnects (it wins over this).
    if (this.lastEventId) q.set('lastEventId', this.lastEventId);
    const qs = q.toString();
    const es = new EventSource(this.baseUrl + '/api/stream' + (qs ? '?' + qs : ''));
    this._es = es;
    es.addEventListener('open', () => {
      this._retryMs = 1000;
      this._setStatus({ stream: 'open' });
    });
    for (const type of new Set([...KNOWN_TYPES, ...this._handlers.keys()])) {
      if (isStreamType(type)) this._listen(es, type);
    }
    es.addEventListener('message', (e) => this._dispatch(e, 'message'));
  }

  /** @param {EventSource} es @param {string} type */
  _listen(es, type) {
    es.addEventListener(type, (e) => {
      // EventSource fires its own `error` (a plain Event) for connection failures;
      // SSE `event: error` frames arrive as MessageEvents with data.
      if (type === 'error' && !(e instanceof MessageEvent)) return this._connectionError(es);
      this._dispatch(/** @type {MessageEvent} */ (e), type);
    });
  }

  /** @param {EventSource} es */
  _connectionError(es) {
    if (es !== this._es || this._closed) return;
    this._setStatus({ stream: 'reconnecting', connected: null });
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (HTTP error, wrong content type): retry ourselves with backoff.
      es.close();
      this._es = null;
      clearTimeout(this._retryTimer);
      this._retryTimer = setTimeout(() => { if (!this._closed) this._open(); }, this._retryMs * (0.8 + Math.random() * 0.4));
      this._retryMs = Math.min(this._retryMs * 2, 30000);
    }
  }

  /** @param {MessageEvent} e @param {string} type */
  _dispatch(e, type) {
    if (this._closed) return;
    if (e.lastEventId && e.lastEventId !== this.lastEventId) {
      this.lastEventId = e.lastEventId;
      writeStorage(this._storageKey, e.lastEventId);
    }
    let env;
    try { env = JSON.parse(e.data); } catch { return; }
    const data = env && typeof env === 'object' && 'data' in env ? env.data : env;
    /** @type {Meta} */
    const meta = (env && env.meta) || { traceId: '', sentAt: '' };
    meta.id = e.lastEventId || undefined;
    const name = (env && typeof env.event === 'string' && type === 'message') ? env.event : type;
    if (name === 'gateway.status') this._setStatus({ connected: !!(data && data.connected) });
    else if (name === 'voice.snapshot') this._voiceSnapshot(data);
    else if (name === 'voice.joined') this._voiceJoined(data);
    else if (name === 'voice.left') this._voiceLeft(data);
    else if (name === 'access' && data && typeof data.guildId === 'string') this._access.set(data.guildId, data);
    else if (name === 'stream.reset') { // the kept id is useless now; the next event's id replaces it
      this.lastEventId = '';
      writeStorage(this._storageKey, '');
    }
    this._emit(name, data, meta);
    this._emit('*', { type: name, data }, meta);
    if (name.startsWith('voice.')) this._emit('relay.voiceMembers', this.voiceChannels());
  }

  /** @param {string} type @param {any} data @param {Meta} [meta] */
  _emit(type, data, meta) {
    const set = this._handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(data, meta); } catch (err) { setTimeout(() => { throw err; }); }
    }
  }

  /** @param {Partial<Status>} patch */
  _setStatus(patch) {
    const next = { ...this.status, ...patch };
    if (next.connected === this.status.connected && next.stream === this.status.stream) return;
    this.status = next;
    this._emit('relay.status', { ...next });
  }

  /** @param {{channels?: Record<string, VoiceMember[]>}} data */
  _voiceSnapshot(data) {
    this._voice = new Map();
    for (const [id, members] of Object.entries((data && data.channels) || {})) {
      if (Array.isArray(members) && members.length) this._voice.set(id, members.map((m) => ({ ...m })));
    }
  }

  /** @param {VoiceMember & {channelId: string}} d */
  _voiceJoined(d) {
    if (!d || !d.userId) return;
    this._removeVoiceUser(d.userId);
    if (!d.channelId) return;
    const list = this._voice.get(d.channelId) || [];
    list.push({ guildId: d.guildId, userId: d.userId, username: d.username, avatar: d.avatar ?? null });
    this._voice.set(d.channelId, list);
  }

  /** @param {{userId: string}} d */
  _voiceLeft(d) { if (d && d.userId) this._removeVoiceUser(d.userId); }

  /** @param {string} userId */
  _removeVoiceUser(userId) {
    for (const [id, list] of this._voice) {
      const kept = list.filter((m) => m.userId !== userId);
      if (kept.length) this._voice.set(id, kept); else this._voice.delete(id);
    }
  }
}

/** Whether `type` names an SSE event (not the client's own `relay.*`/`*` channels, nor `message`). @param {string} type */
function isStreamType(type) {
  return type !== '*' && type !== 'message' && !type.startsWith('relay.');
}

/** @param {number} status */
function codeFor(status) {
  return ({ 400: 'invalid_request', 401: 'unauthenticated', 403: 'forbidden', 404: 'not_found',
    405: 'method_not_allowed', 413: 'payload_too_large', 415: 'unsupported_media_type', 429: 'rate_limited',
    502: 'gateway_error', 503: 'queue_full', 504: 'gateway_timeout' })[status] || 'http_' + status;
}

/** @param {string} key */
function readStorage(key) {
  try { return sessionStorage.getItem(key) || ''; } catch { return ''; }
}

/** @param {string} key @param {string} value */
function writeStorage(key, value) {
  try { sessionStorage.setItem(key, value); } catch { /* storage disabled: resume only within the page */ }
}
