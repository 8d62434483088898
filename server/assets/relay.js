// relay browser client — generated from clients/js (the @relay/client package);
// do not edit: change clients/js/src and run `npm run build:asset` there.
// Dependency-free ES module: import { RelayClient, RelayError } from '/client/relay.js';

// src/errors.ts
var RelayError = class extends Error {
  constructor(status, code, message, extra = {}) {
    super(message);
    this.name = "RelayError";
    this.status = status;
    this.code = code;
    this.issues = extra.issues ?? [];
    this.retryAfterMs = extra.retryAfterMs ?? null;
    this.permission = extra.permission ?? null;
  }
};
var CODES = {
  400: "invalid_request",
  401: "unauthenticated",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  408: "request_timeout",
  413: "payload_too_large",
  415: "unsupported_media_type",
  429: "rate_limited",
  502: "gateway_error",
  503: "queue_full",
  504: "gateway_timeout"
};
function codeFor(status) {
  return CODES[status] ?? "http_" + status;
}
function parseRetryAfter(value, now = Date.now()) {
  if (value === null || value.trim() === "") return null;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1e3);
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}
function errorFromResponse(status, statusText, json, headers) {
  const body = json && typeof json === "object" ? json : {};
  const err = body.error && typeof body.error === "object" ? body.error : {};
  let retryAfterMs = typeof body.retryAfterMs === "number" && Number.isFinite(body.retryAfterMs) ? body.retryAfterMs : null;
  if (retryAfterMs === null && (status === 429 || status === 503)) retryAfterMs = parseRetryAfter(headers.get("Retry-After"));
  return new RelayError(
    status,
    typeof err.code === "string" && err.code ? err.code : codeFor(status),
    typeof err.message === "string" && err.message ? err.message : statusText || "request failed",
    {
      issues: Array.isArray(body.issues) ? body.issues : [],
      retryAfterMs,
      permission: typeof err.permission === "string" ? err.permission : null
    }
  );
}

// src/parse.ts
var EVENT_TYPES = [
  "messageCreate",
  "messageUpdate",
  "messageDelete",
  "reactionAdd",
  "reactionRemove",
  "typingStart",
  "voice.joined",
  "voice.left",
  "voice.snapshot",
  "access",
  "gateway.status",
  "stream.reset",
  "error"
];
var KNOWN = new Set(EVENT_TYPES);
function isEventType(type) {
  return KNOWN.has(type);
}
var isObj = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
var str = (o, ...keys) => keys.every((k) => typeof o[k] === "string");
var REQUIRED = {
  messageCreate: (d) => str(d, "id", "channelId") && isObj(d.author) && typeof d.author.id === "string",
  messageUpdate: (d) => str(d, "id", "channelId"),
  messageDelete: (d) => str(d, "id", "channelId"),
  reactionAdd: (d) => str(d, "channelId", "messageId", "userId") && isObj(d.emoji),
  reactionRemove: (d) => str(d, "channelId", "messageId", "userId") && isObj(d.emoji),
  typingStart: (d) => str(d, "channelId", "userId"),
  "voice.joined": (d) => str(d, "channelId", "userId"),
  "voice.left": (d) => str(d, "userId") && (d.channelId === null || d.channelId === void 0 || typeof d.channelId === "string"),
  "voice.snapshot": (d) => isObj(d.channels),
  access: (d) => str(d, "guildId") && isObj(d.channels),
  "gateway.status": (d) => typeof d.connected === "boolean",
  "stream.reset": (d) => d.reason === "gap" || d.reason === "epoch",
  error: (d) => str(d, "code")
};
function parseEvent(name, text, id) {
  let env;
  try {
    env = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObj(env)) return null;
  const type = name === "message" && typeof env.event === "string" ? env.event : name;
  const data = "data" in env ? env.data : env;
  const m = isObj(env.meta) ? env.meta : {};
  const meta = {
    traceId: typeof m.traceId === "string" ? m.traceId : "",
    sentAt: typeof m.sentAt === "string" ? m.sentAt : ""
  };
  if (id) meta.id = id;
  if (typeof m.rev === "number" && Number.isSafeInteger(m.rev)) meta.rev = m.rev;
  if (!isEventType(type)) return { known: false, event: { type, data, meta } };
  if (!isObj(data) || !REQUIRED[type](data)) return null;
  if (type === "voice.left" && data.channelId === void 0) data.channelId = null;
  return { known: true, event: { type, data, meta } };
}

// src/client.ts
var EMPTY = Object.freeze([]);
var OWN_MOVE_MS = 1e4;
var CHANNEL_EVENTS = /* @__PURE__ */ new Set(["messageCreate", "messageUpdate", "messageDelete", "reactionAdd", "reactionRemove"]);
var RelayClient = class {
  constructor(options = {}) {
    /** The id of the last event received (`<epoch>-<seq>`), '' before any. */
    this.lastEventId = "";
    this._handlers = /* @__PURE__ */ new Map();
    this._voice = /* @__PURE__ */ new Map();
    this._access = /* @__PURE__ */ new Map();
    this._es = null;
    this._retryMs = 1e3;
    this._closed = false;
    this._pinned = false;
    this._refs = 0;
    this._watched = /* @__PURE__ */ new Map();
    this._resetGen = 0;
    this._resyncBuffers = null;
    this._ownMoves = /* @__PURE__ */ new Map();
    this.baseUrl = (options.baseUrl || "").replace(/\/+$/, "");
    this.token = options.token;
    this.types = options.types;
    this.channels = options.channels;
    this.withCredentials = options.withCredentials ?? !!this.baseUrl;
    this._fetchImpl = options.fetch;
    this._esImpl = options.EventSource;
    this._historyLimit = options.historyLimit ?? 50;
    this._storage = options.storage === void 0 ? defaultStorage() : options.storage;
    const origin = typeof location !== "undefined" ? location.origin : "";
    this._storageKey = "relay.lastEventId:" + (this.baseUrl || origin);
    if (options.resume !== false) this.lastEventId = this._read();
    const autoConnect = options.autoConnect !== false;
    this.status = { connected: null, stream: autoConnect ? "connecting" : "idle" };
    if (autoConnect) this.connect();
  }
  // ---- connection ----------------------------------------------------------
  /** Opens the stream (if it is not open) and keeps it open until `close()`. */
  connect() {
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
  retain() {
    this._refs++;
    clearTimeout(this._releaseTimer);
    this._releaseTimer = void 0;
    this._closed = false;
    this._ensureOpen();
  }
  release() {
    if (this._refs === 0) return;
    this._refs--;
    if (this._refs > 0 || this._pinned) return;
    clearTimeout(this._releaseTimer);
    this._releaseTimer = setTimeout(() => {
      this._releaseTimer = void 0;
      if (this._refs === 0 && !this._pinned) this._shutdown();
    }, 0);
  }
  /** Closes the stream; handlers stay registered but are not called until the stream is opened again. */
  close() {
    this._pinned = false;
    this._refs = 0;
    clearTimeout(this._releaseTimer);
    this._releaseTimer = void 0;
    this._shutdown();
  }
  on(type, fn) {
    let set = this._handlers.get(type);
    if (!set) {
      this._handlers.set(type, set = /* @__PURE__ */ new Set());
      if (this._es && isStreamType(type) && !EVENT_TYPES.includes(type)) this._listen(this._es, type);
    }
    const handlers = set;
    handlers.add(fn);
    return () => {
      handlers.delete(fn);
      if (handlers.size === 0 && this._handlers.get(type) === handlers) this._handlers.delete(type);
    };
  }
  onMessage(fn) {
    return this.on("messageCreate", fn);
  }
  onMessageUpdate(fn) {
    return this.on("messageUpdate", fn);
  }
  onMessageDelete(fn) {
    return this.on("messageDelete", fn);
  }
  onReaction(fn) {
    return this.on("reactionAdd", fn);
  }
  onReactionRemove(fn) {
    return this.on("reactionRemove", fn);
  }
  onTyping(fn) {
    return this.on("typingStart", fn);
  }
  onVoiceJoined(fn) {
    return this.on("voice.joined", fn);
  }
  onVoiceLeft(fn) {
    return this.on("voice.left", fn);
  }
  /** SSE `error` events: gateway error frames and `malformed_frame`. */
  onError(fn) {
    return this.on("error", fn);
  }
  /** `stream.reset` `{reason}`: events were missed; watched channels are refetched by the client. */
  onReset(fn) {
    return this.on("stream.reset", fn);
  }
  /** Link and stream state; called at once with the current state, then on every change. */
  onStatus(fn) {
    fn({ ...this.status });
    return this.on("relay.status", fn);
  }
  /** Voice membership after every snapshot/join/leave; called at once with the current state. */
  onVoiceMembers(fn) {
    fn(this.voiceChannels());
    return this.on("relay.voiceMembers", () => fn(this.voiceChannels()));
  }
  /**
   * `access` events (ACCESS=discord): every channel the member may view in a guild and
   * what they may do there. Called at once for every guild already known.
   */
  onAccess(fn) {
    for (const a of this._access.values()) fn(a);
    return this.on("access", fn);
  }
  /** The latest `access` of `guildId`, if one arrived. */
  access(guildId) {
    return this._access.get(guildId);
  }
  /** The latest `access` event of any guild. */
  latestAccess() {
    return this._latestAccess;
  }
  /** Members of one voice channel (a copy). */
  voiceMembers(channelId) {
    return [...this._voice.get(channelId) || []];
  }
  /** A copy: channel id → members. */
  voiceChannels() {
    return new Map([...this._voice].map(([id, m]) => [id, [...m]]));
  }
  /** The voice state itself: a new (frozen) map on every change, so it can be compared by identity. */
  voiceState() {
    return this._voice;
  }
  /** Members of one voice channel; the same array until that channel changes. */
  voiceMembersOf(channelId) {
    return this._voice.get(channelId) ?? EMPTY;
  }
  /** The voice channel `userId` is in, as far as this client knows. */
  voiceChannelOf(userId) {
    for (const [channelId, list] of this._voice) {
      const m = list.find((x) => x.userId === userId);
      if (m) return { channelId, guildId: m.guildId };
    }
    return null;
  }
  /** Whether this client moved or disconnected `userId` in the last 10 s (not yet followed by a join). */
  movedByThisClient(userId, withinMs = OWN_MOVE_MS) {
    const at = this._ownMoves.get(userId);
    return at !== void 0 && Date.now() - at <= withinMs;
  }
  /**
   * Marks a channel as shown: after `stream.reset` the client refetches its latest
   * `limit` messages and emits `relay.resync`. Counted; call the returned function once.
   */
  watchChannel(channelId, opts = {}) {
    const w = this._watched.get(channelId);
    const limit = opts.limit ?? this._historyLimit;
    if (w) {
      w.count++;
      w.limit = Math.max(w.limit, limit);
    } else this._watched.set(channelId, { count: 1, limit });
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const cur = this._watched.get(channelId);
      if (cur && --cur.count <= 0) this._watched.delete(channelId);
    };
  }
  /** Channels with at least one watcher. */
  watchedChannels() {
    return [...this._watched.keys()];
  }
  /** Registered handlers, all types together (for leak checks). */
  listenerCount() {
    let n = 0;
    for (const set of this._handlers.values()) n += set.size;
    return n;
  }
  // ---- commands and history ------------------------------------------------
  sendMessage(channelId, content) {
    return this._post("/api/send-message", { channelId, content });
  }
  /** `emoji`: unicode, or `name:id` for a custom one. */
  addReaction(channelId, messageId, emoji) {
    return this._post("/api/add-reaction", { channelId, messageId, emoji });
  }
  typingStart(channelId) {
    return this._post("/api/typing-start", { channelId });
  }
  /** `channelId` null disconnects the member from voice. */
  async moveMember(guildId, userId, channelId) {
    const at = Date.now();
    this._ownMoves.set(userId, at);
    try {
      return await this._post("/api/voice/move-member", { guildId, userId, channelId });
    } catch (err) {
      if (this._ownMoves.get(userId) === at) this._ownMoves.delete(userId);
      throw err;
    }
  }
  muteMember(guildId, userId, mute) {
    return this._post("/api/voice/mute-member", { guildId, userId, mute });
  }
  /**
   * `GET /api/channels/{id}/messages`: newest first. `limit` 1–100 (default 50);
   * at most one of `before`, `after`, `around`.
   */
  async fetchMessages(channelId, query = {}) {
    const q = new URLSearchParams();
    const anchors = ["before", "after", "around"].filter((k) => query[k] !== void 0);
    if (anchors.length > 1) throw new RelayError(400, "invalid_request", "use at most one of before, after, around");
    q.set("limit", String(query.limit ?? 50));
    for (const k of anchors) q.set(k, String(query[k]));
    const json = await this._request("GET", `/api/channels/${encodeURIComponent(channelId)}/messages?${q}`);
    const list = json && typeof json === "object" && Array.isArray(json.messages) ? json.messages : [];
    const rev = json && typeof json === "object" ? json.rev : void 0;
    const asOf = typeof rev === "number" && Number.isSafeInteger(rev) ? { rev } : {};
    return list.filter(isMessageLike).map((m) => ({ ...m, reactions: Array.isArray(m.reactions) ? m.reactions : [], ...asOf }));
  }
  // ---- internals -----------------------------------------------------------
  async _post(path, body) {
    const { status, json } = await this._send("POST", path, body);
    const j = json ?? {};
    const out = { ok: true, requestId: j.requestId ?? "", traceId: j.traceId ?? "" };
    if (j.queued || status === 202) out.queued = true;
    return out;
  }
  async _request(method, path) {
    return (await this._send(method, path)).json;
  }
  async _send(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = "Bearer " + this.token;
    const f = this._fetchImpl ?? globalThis.fetch;
    let res;
    try {
      res = await f.call(globalThis, this.baseUrl + path, {
        method,
        headers,
        body: body ? JSON.stringify(body) : void 0,
        credentials: this.withCredentials ? "include" : "same-origin"
      });
    } catch (err) {
      throw new RelayError(0, "network_error", "relay is unreachable: " + (err?.message || String(err)));
    }
    let json = null;
    try {
      json = await res.json();
    } catch {
    }
    if (res.status >= 200 && res.status < 300) return { status: res.status, json };
    throw errorFromResponse(res.status, res.statusText, json, res.headers);
  }
  _ensureOpen() {
    if (!this._es && this._retryTimer === void 0) this._open();
  }
  _shutdown() {
    this._closed = true;
    this._resetGen++;
    this._resyncBuffers = null;
    clearTimeout(this._retryTimer);
    this._retryTimer = void 0;
    if (this._es) this._es.close();
    this._es = null;
    this._setStatus({ stream: "closed" });
  }
  /** Opens the (single) EventSource. */
  _open() {
    const q = new URLSearchParams();
    if (this.token) q.set("access_token", this.token);
    if (this.types && this.types.length) q.set("types", this.types.join(","));
    if (this.channels && this.channels.length) q.set("channels", this.channels.join(","));
    if (this.lastEventId) q.set("lastEventId", this.lastEventId);
    const qs = q.toString();
    const ES = this._esImpl ?? globalThis.EventSource;
    const es = new ES(this.baseUrl + "/api/stream" + (qs ? "?" + qs : ""), this.withCredentials ? { withCredentials: true } : void 0);
    this._es = es;
    this._setStatus({ stream: this.status.stream === "reconnecting" ? "reconnecting" : "connecting" });
    es.addEventListener("open", () => {
      if (es !== this._es) return;
      this._retryMs = 1e3;
      this._setStatus({ stream: "open" });
    });
    for (const type of /* @__PURE__ */ new Set([...EVENT_TYPES, ...this._handlers.keys()])) {
      if (isStreamType(type)) this._listen(es, type);
    }
    es.addEventListener("message", (e) => this._dispatch(es, e, "message"));
  }
  _listen(es, type) {
    es.addEventListener(type, (e) => {
      if (type === "error" && typeof e.data !== "string") return this._connectionError(es);
      this._dispatch(es, e, type);
    });
  }
  _connectionError(es) {
    if (es !== this._es || this._closed) return;
    this._setStatus({ stream: "reconnecting", connected: null });
    if (es.readyState === 2) {
      es.close();
      this._es = null;
      clearTimeout(this._retryTimer);
      this._retryTimer = setTimeout(() => {
        this._retryTimer = void 0;
        if (!this._closed) this._open();
      }, this._retryMs * (0.8 + Math.random() * 0.4));
      this._retryMs = Math.min(this._retryMs * 2, 3e4);
    }
  }
  _dispatch(es, e, name) {
    if (this._closed || es !== this._es) return;
    if (e.lastEventId && e.lastEventId !== this.lastEventId) {
      this.lastEventId = e.lastEventId;
      this._write(e.lastEventId);
    }
    const parsed = parseEvent(name, String(e.data), e.lastEventId || void 0);
    if (!parsed) return;
    if (!parsed.known) {
      this._emit(parsed.event.type, parsed.event.data, parsed.event.meta);
      this._emit("*", { type: parsed.event.type, data: parsed.event.data }, parsed.event.meta);
      return;
    }
    this._apply(parsed.event);
  }
  /** Feeds one parsed event through the client (state, resync, handlers). Public for tests and custom transports. */
  _apply(ev) {
    const { type, meta } = ev;
    let voiceChanged = false;
    switch (ev.type) {
      case "gateway.status":
        this._setStatus({ connected: ev.data.connected });
        break;
      case "voice.snapshot":
        this._voiceSnapshot(ev.data);
        voiceChanged = true;
        break;
      case "voice.joined":
        this._voiceJoined(ev.data);
        voiceChanged = true;
        break;
      case "voice.left":
        this._voiceLeft(ev.data);
        voiceChanged = true;
        break;
      case "access": {
        const next = new Map(this._access);
        next.set(ev.data.guildId, ev.data);
        this._access = next;
        this._latestAccess = ev.data;
        break;
      }
      case "stream.reset":
        this.lastEventId = "";
        this._write("");
        break;
      default:
        if (CHANNEL_EVENTS.has(type) && this._resyncBuffers) {
          this._resyncBuffers.get(ev.data.channelId)?.push(ev);
        }
    }
    this._emit(type, ev.data, meta);
    this._emit("*", { type, data: ev.data }, meta);
    if (voiceChanged) this._emit("relay.voiceMembers", this._voice);
    if (ev.type === "voice.joined") this._ownMoves.delete(ev.data.userId);
    if (ev.type === "stream.reset") this._refetchWatched(ev.data.reason);
  }
  /** After `stream.reset`: refetches every watched channel, then `relay.resync` each and `relay.resetComplete`. */
  _refetchWatched(reason) {
    const gen = ++this._resetGen;
    const watched = [...this._watched];
    const buffers = new Map(watched.map(([id]) => [id, []]));
    this._resyncBuffers = buffers;
    const failed = [];
    const one = async ([channelId, w]) => {
      let messages = [];
      let error;
      try {
        messages = await this.fetchMessages(channelId, { limit: w.limit });
      } catch (err) {
        error = err;
      }
      if (gen !== this._resetGen) return;
      const events = buffers.get(channelId) ?? [];
      buffers.delete(channelId);
      if (error !== void 0) failed.push(channelId);
      this._emit("relay.resync", error !== void 0 ? { channelId, reason, messages: [], events, error } : { channelId, reason, messages, events });
    };
    void Promise.all(watched.map(one)).then(() => {
      if (gen !== this._resetGen) return;
      this._resyncBuffers = null;
      this._emit("relay.resetComplete", { reason, channels: watched.map(([id]) => id), failed });
    });
  }
  _emit(type, data, meta) {
    const set = this._handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        if (meta === void 0) fn(data);
        else fn(data, meta);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
  _setStatus(patch) {
    const next = { ...this.status, ...patch };
    if (next.connected === this.status.connected && next.stream === this.status.stream) return;
    this.status = next;
    this._emit("relay.status", { ...next });
  }
  _voiceSnapshot(data) {
    const next = /* @__PURE__ */ new Map();
    for (const [id, members] of Object.entries(data.channels || {})) {
      if (Array.isArray(members) && members.length) next.set(id, Object.freeze(members.map((m) => ({ ...m }))));
    }
    this._voice = next;
  }
  _voiceJoined(d) {
    const next = this._withoutUser(d.userId);
    const list = next.get(d.channelId) || [];
    next.set(d.channelId, Object.freeze([...list, { guildId: d.guildId, userId: d.userId, username: d.username, avatar: d.avatar ?? null }]));
    this._voice = next;
  }
  _voiceLeft(d) {
    this._voice = this._withoutUser(d.userId);
  }
  _withoutUser(userId) {
    const next = /* @__PURE__ */ new Map();
    for (const [id, list] of this._voice) {
      const kept = list.some((m) => m.userId === userId) ? list.filter((m) => m.userId !== userId) : list;
      if (kept.length) next.set(id, kept === list ? list : Object.freeze(kept));
    }
    return next;
  }
  _read() {
    try {
      return this._storage?.getItem(this._storageKey) || "";
    } catch {
      return "";
    }
  }
  _write(value) {
    try {
      this._storage?.setItem(this._storageKey, value);
    } catch {
    }
  }
};
function isStreamType(type) {
  return type !== "*" && type !== "message" && !type.startsWith("relay.");
}
function isMessageLike(m) {
  return !!m && typeof m === "object" && typeof m.id === "string" && typeof m.channelId === "string";
}
function defaultStorage() {
  try {
    return typeof sessionStorage !== "undefined" ? sessionStorage : null;
  } catch {
    return null;
  }
}

// src/feed.ts
function compareIds(a, b) {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}
var emojiKey = (e) => e.id ? `${e.name ?? ""}:${e.id}` : e.name ?? "";
function alreadyIn(old, ev) {
  const rev = ev.meta?.rev;
  return old?.rev !== void 0 && rev !== void 0 && rev <= old.rev;
}
var revAfter = (ev) => ev.meta?.rev !== void 0 ? { rev: ev.meta.rev } : {};
function applyChannelEvent(byId, ev) {
  switch (ev.type) {
    case "messageCreate": {
      const old = byId.get(ev.data.id);
      if (alreadyIn(old, ev)) return false;
      byId.set(ev.data.id, { ...ev.data, reactions: old?.reactions ?? [], ...old?.editedTimestamp ? { editedTimestamp: old.editedTimestamp } : {}, ...revAfter(ev) });
      return true;
    }
    case "messageUpdate": {
      const old = byId.get(ev.data.id);
      if (!old || alreadyIn(old, ev)) return false;
      const next = { ...old, ...revAfter(ev) };
      if (typeof ev.data.content === "string") next.content = ev.data.content;
      if (ev.data.editedTimestamp !== void 0) next.editedTimestamp = ev.data.editedTimestamp;
      byId.set(old.id, next);
      return true;
    }
    case "messageDelete":
      return byId.delete(ev.data.id);
    case "reactionAdd":
    case "reactionRemove": {
      const old = byId.get(ev.data.messageId);
      if (!old || alreadyIn(old, ev)) return false;
      const key = emojiKey(ev.data.emoji);
      const delta = ev.type === "reactionAdd" ? 1 : -1;
      let found = false;
      const reactions = old.reactions.map((r) => {
        if (emojiKey(r.emoji) !== key) return r;
        found = true;
        return { ...r, count: r.count + delta };
      }).filter((r) => r.count > 0);
      if (!found && delta > 0) reactions.push({ emoji: { ...ev.data.emoji }, count: 1 });
      byId.set(old.id, { ...old, reactions, ...revAfter(ev) });
      return true;
    }
  }
}
var ChannelFeed = class {
  constructor(client, channelId, options = {}) {
    this._byId = /* @__PURE__ */ new Map();
    this._state = { messages: [], loading: true, loadingOlder: false, hasMore: true, error: null };
    this._listeners = /* @__PURE__ */ new Set();
    this._offs = [];
    this._running = false;
    /** Bumped whenever a base list in flight becomes stale (reset, stop). */
    this._gen = 0;
    /** Live events since the first page was asked for; replayed on top of it. */
    this._buffer = null;
    /** Live events since an older page was asked for; replayed on its messages. */
    this._olderBuffer = null;
    this._client = client;
    this.channelId = channelId;
    this._limit = options.limit ?? 50;
  }
  getState() {
    return this._state;
  }
  subscribe(fn) {
    this._listeners.add(fn);
    return () => {
      this._listeners.delete(fn);
    };
  }
  /** Subscribes to the client, registers the channel for reset refetches, and loads the latest page. */
  start() {
    if (this._running) return;
    this._running = true;
    const c = this._client;
    const live = (ev) => {
      if (ev.data.channelId !== this.channelId) return;
      this._buffer?.push(ev);
      this._olderBuffer?.push(ev);
      if (applyChannelEvent(this._byId, ev)) this._publish({});
    };
    this._offs = [
      c.watchChannel(this.channelId, { limit: this._limit }),
      c.on("messageCreate", (data, meta) => live({ type: "messageCreate", data, meta })),
      c.on("messageUpdate", (data, meta) => live({ type: "messageUpdate", data, meta })),
      c.on("messageDelete", (data, meta) => live({ type: "messageDelete", data, meta })),
      c.on("reactionAdd", (data, meta) => live({ type: "reactionAdd", data, meta })),
      c.on("reactionRemove", (data, meta) => live({ type: "reactionRemove", data, meta })),
      // The client refetches this channel by itself; until it answers, the list is stale.
      c.on("stream.reset", () => {
        this._gen++;
        this._buffer = null;
        this._olderBuffer = null;
        this._publish({ loading: true });
      }),
      c.on("relay.resync", (r) => {
        if (r.channelId === this.channelId) this._resync(r);
      })
    ];
    void this._loadLatest();
  }
  /** Unsubscribes everything; results still in flight are dropped. */
  stop() {
    if (!this._running) return;
    this._running = false;
    this._gen++;
    this._buffer = null;
    this._olderBuffer = null;
    for (const off of this._offs.splice(0)) off();
  }
  /** Loads the page before the oldest message held (scroll-up). */
  async loadOlder() {
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
      const added = /* @__PURE__ */ new Map();
      for (const m of page) if (!this._byId.has(m.id)) added.set(m.id, m);
      for (const ev of this._olderBuffer ?? []) {
        const target = ev.type === "reactionAdd" || ev.type === "reactionRemove" ? ev.data.messageId : ev.data.id;
        if (ev.meta?.rev !== void 0 && added.get(target)?.rev !== void 0) applyChannelEvent(added, ev);
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
  async _loadLatest() {
    const gen = ++this._gen;
    this._buffer = [];
    this._publish({ loading: true });
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
  _resync(r) {
    if (!this._running) return;
    this._gen++;
    this._buffer = null;
    this._olderBuffer = null;
    if (r.error !== void 0) {
      for (const ev of r.events) applyChannelEvent(this._byId, ev);
      this._publish({ loading: false, error: r.error });
      return;
    }
    this._rebase(r.messages, r.events);
    this._publish({ loading: false, hasMore: r.messages.length >= this._limit, error: null });
  }
  /** The list becomes `page` plus the live events that arrived while it was fetched. */
  _rebase(page, events) {
    this._byId = new Map(page.map((m) => [m.id, m]));
    for (const ev of events) applyChannelEvent(this._byId, ev);
  }
  _publish(patch) {
    const messages = [...this._byId.values()].sort((a, b) => compareIds(a.id, b.id));
    this._state = { ...this._state, ...patch, messages };
    for (const fn of [...this._listeners]) fn(this._state);
  }
};

// src/dropout.ts
var NONE = Object.freeze({ droppedOut: false, channelId: null, guildId: null, since: null });
var VoiceDropoutWatcher = class {
  constructor(client, userId, options = {}) {
    this._state = NONE;
    this._where = null;
    this._listeners = /* @__PURE__ */ new Set();
    this._offs = [];
    this._client = client;
    this.userId = userId;
    this._graceMs = options.moveGraceMs ?? 1500;
  }
  getState() {
    return this._state;
  }
  subscribe(fn) {
    this._listeners.add(fn);
    return () => {
      this._listeners.delete(fn);
    };
  }
  start() {
    if (this._offs.length) return;
    const c = this._client;
    this._where = c.voiceChannelOf(this.userId);
    this._offs = [
      c.on("voice.left", (d) => {
        if (d.userId !== this.userId) return;
        const from = d.channelId ? { channelId: d.channelId, guildId: d.guildId } : this._where;
        this._where = null;
        if (!from || c.movedByThisClient(this.userId)) return;
        const since = Date.now();
        clearTimeout(this._pending);
        this._pending = setTimeout(() => {
          this._pending = void 0;
          this._set({ droppedOut: true, channelId: from.channelId, guildId: from.guildId, since });
        }, this._graceMs);
      }),
      c.on("voice.joined", (d) => {
        if (d.userId !== this.userId) return;
        clearTimeout(this._pending);
        this._pending = void 0;
        this._where = { channelId: d.channelId, guildId: d.guildId };
        if (this._state.droppedOut) this._set(NONE);
      }),
      c.on("voice.snapshot", () => {
        const now = c.voiceChannelOf(this.userId);
        const was = this._where;
        this._where = now;
        if (now) {
          if (this._state.droppedOut) this._set(NONE);
          return;
        }
        if (was && !this._pending && !c.movedByThisClient(this.userId)) {
          this._set({ droppedOut: true, channelId: was.channelId, guildId: was.guildId, since: Date.now() });
        }
      })
    ];
  }
  stop() {
    clearTimeout(this._pending);
    this._pending = void 0;
    for (const off of this._offs.splice(0)) off();
  }
  /** Closes the modal until the next dropout. */
  dismiss() {
    if (this._state.droppedOut) this._set(NONE);
  }
  /** Moves the user back into the channel they dropped out of (needs `voice:moderate` and Move Members). */
  rejoin() {
    const { channelId, guildId } = this._state;
    if (!channelId || !guildId) return Promise.resolve(null);
    return this._client.moveMember(guildId, this.userId, channelId);
  }
  _set(s) {
    this._state = s;
    for (const fn of [...this._listeners]) fn(s);
  }
};
export {
  ChannelFeed,
  EVENT_TYPES,
  RelayClient,
  RelayError,
  VoiceDropoutWatcher,
  applyChannelEvent,
  codeFor,
  compareIds,
  errorFromResponse,
  isEventType,
  parseEvent,
  parseRetryAfter
};
