// relay demo page: sign in, then one RelayClient drives the whole UI.
// User text only ever reaches the DOM through textContent (see `h`).
import { ChannelFeed, RelayClient, RelayError } from '/client/relay.js';

/**
 * A channel the page lists. Under ACCESS=discord the list is the latest `access` event's
 * (`can` set); otherwise (ACCESS=roles, no `access` events) channels are learned from
 * the stream and `can` is absent: the edge checks roles only.
 * @typedef {{id: string, name: string, kind: 'text'|'thread'|'voice', parentId?: string|null, can?: string[]}} Channel
 */
/** @typedef {{id: string, username: string, avatar?: string|null}} User */
/**
 * @typedef {object} Session
 * @property {User} user
 * @property {string} guildId
 * @property {Channel[]} [channels] only with a pasted JWT and a channel id typed in
 * @property {string} [token] only when signed in with a pasted JWT
 */
/**
 * A message as the client's `ChannelFeed` holds it: `messageCreate`'s data plus
 * `editedTimestamp` and `reactions: [{emoji, count}]` (CONTRACT.md §9).
 * @typedef {import('/client/relay.js').Message} Message
 */

const SESSION_KEY = 'relay.demo.session';
/** Where earlier versions of the page cached messages; cleared at sign-out. History replaces it. */
const FEED_KEY = 'relay.demo.feed';
/** Messages per history page: the first page of a channel, each older page, the refetch after a reset. */
const PAGE = 50;
/** Scrolled this close to the top, the page asks for the next older page. */
const OLDER_AT_PX = 120;
const CURRENT_KEY = 'relay.demo.channel';
/** Discord channel types the page shows (0 text, 5 announcement, 2 voice, 13 stage, 10–12 threads). */
const KIND = /** @type {Record<number, Channel['kind']>} */ ({ 0: 'text', 5: 'text', 2: 'voice', 13: 'voice', 10: 'thread', 11: 'thread', 12: 'thread' });
const REACTIONS = ['👍', '🎉', '🔥', '❤️'];
const TYPING_TTL_MS = 10_000;
const TYPING_EVERY_MS = 8_000;

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * Builds an element. Strings become text nodes — never HTML.
 * @param {string} tag
 * @param {Record<string, any>} [attrs] `class`, `text`, `on<event>`, `data-*`, aria-*, or properties
 * @param {...(Node|string|null|undefined|false)} children
 */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k.includes('-') || k === 'title' || k === 'type' || k === 'role' || k === 'style') el.setAttribute(k, v === true ? '' : v);
    else /** @type {any} */ (el)[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const SVG = {
  mic: 'M12 3a3 3 0 0 0-3 3v5a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3zM5 11a7 7 0 0 0 14 0M12 18v3',
  micOff: 'M12 3a3 3 0 0 0-3 3v5a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3zM5 11a7 7 0 0 0 14 0M12 18v3M4 4l16 16',
  speaker: 'M4 9v6h4l5 4V5L8 9zM16 9a4 4 0 0 1 0 6M18.5 6.5a8 8 0 0 1 0 11',
  lock: 'M7 11V8a5 5 0 0 1 10 0v3M5 11h14v10H5z',
  out: 'M15 4h3a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-3M10 17l5-5-5-5M15 12H4',
};
/** @param {string} d */
function icon(d) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', d);
  svg.append(path);
  return svg;
}

/** @param {string} name */
function initials(name) {
  const words = String(name || '?').trim().split(/[\s_.-]+/).filter(Boolean);
  const s = words.length > 1 ? words[0][0] + words[1][0] : [...(words[0] || '?')].slice(0, 2).join('');
  return s.toUpperCase();
}
/** A stable, well-spread hue per id (FNV-1a, then a golden-angle step). @param {string} id */
function hue(id) {
  let x = 0x811c9dc5;
  for (const c of String(id)) x = Math.imul(x ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return Math.round(((x % 997) * 137.508) % 360);
}
/** @param {string} id @param {string} name @param {string} [extra] */
function avatar(id, name, extra = '') {
  const el = h('span', { class: 'avatar ' + extra, text: initials(name), 'aria-hidden': 'true' });
  el.style.setProperty('--h', String(hue(id)));
  return el;
}
/** @param {string} ts */
function clock(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

// ---- state -----------------------------------------------------------------

/** @type {Session} */ let session;
/** @type {RelayClient} */ let relay;
/** @type {Map<string, User>} */ const users = new Map();
/** @type {Map<string, Channel>} in display order */ const channels = new Map();
/** @type {Map<string, Channel[]>} guild id → its channels from the latest `access` */ const accessByGuild = new Map();
/** Whether the edge sends `access` (ACCESS=discord): then only what it lists is shown. */
let byAccess = false;
/**
 * The open channel's messages: the client module's feed (history on open, live events
 * merged, older pages, a refetch by itself after `stream.reset`). One at a time.
 * @type {ChannelFeed|null}
 */ let feed = null;
/** @type {() => void} */ let feedOff = () => {};
/** Rows on the page by message id, with the message object each was drawn from. */
/** @type {Map<string, {row: HTMLElement, m: Message, key: string}>} */ const rows = new Map();
/** `<messageId>|<emoji key>` of reactions the signed-in user added (live events; history has counts only). */
const myReactions = new Set();
/** @type {Map<string, number>} */ const unread = new Map();
/** @type {Map<string, Map<string, number>>} channel → user → expiry */ const typing = new Map();
/** @type {Map<string, boolean>} user → muted (as last set from this page) */ const muted = new Map();
let current = '';
let myVoice = /** @type {string|null} */ (null);
let leavingOnPurpose = 0;
let lastTypingSent = 0;
let status = { connected: /** @type {boolean|null} */ (null), stream: 'connecting' };
const stats = { total: 0, times: /** @type {number[]} */ ([]), lat: /** @type {number[]} */ ([]), lastId: '' };

const userName = (/** @type {string} */ id) => users.get(id)?.username || 'user ' + String(id).slice(-4);
const channelName = (/** @type {string} */ id) => channels.get(id)?.name || String(id);
/**
 * Whether the member may do `what` in channel `id` (an `access` can-flag). Without
 * `access` events the edge checks roles only, so everything is offered.
 * @param {string|null|undefined} id @param {string} what
 */
const may = (id, what) => !byAccess || !!(id && channels.get(id)?.can?.includes(what));
const isChat = (/** @type {string} */ id) => { const k = channels.get(id)?.kind; return k === 'text' || k === 'thread'; };

// ---- sign-in ---------------------------------------------------------------

async function boot() {
  const saved = readJson(sessionStorage, SESSION_KEY);
  if (saved && saved.user) return start(saved);
  // Back from Sign in with Discord: the session is an HttpOnly cookie, so ask who it is.
  const outcome = new URLSearchParams(location.search).get('signin');
  if (outcome) history.replaceState(null, '', location.pathname);
  let me = null;
  try { const r = await fetch('/auth/session', { credentials: 'same-origin' }); if (r.ok) me = await r.json(); } catch { me = null; }
  if (me && me.user) {
    const s = { user: me.user, guildId: me.guildId || '', channels: me.channels || [] };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
    return start(s);
  }
  $('signin').hidden = false;
  if (outcome === 'denied') signinError('Sign-in was cancelled at Discord.');
  else if (outcome === 'failed') signinError('Discord sign-in failed — please try again.');
  let res;
  try { res = await fetch('/api/demo/users', { credentials: 'same-origin' }); } catch { res = null; }
  if (res && res.status === 404) return showTokenForm();
  if (!res || !res.ok) return signinError('relay is not answering — is it running? Reload to try again.');
  /** @type {User[]} */ const list = await res.json();
  const ul = $('signin-user-list');
  for (const u of list) {
    ul.append(h('li', {}, h('button', {
      class: 'user-btn', type: 'button', 'data-testid': 'signin-user', 'data-user-id': u.id,
      onclick: () => signInAs(u),
    }, avatar(u.id, u.username), h('span', { class: 'user-btn-name', text: u.username }),
    h('span', { class: 'user-btn-go', text: 'Sign in →', 'aria-hidden': 'true' }))));
  }
  $('signin-users').hidden = false;
  ul.querySelector('button')?.focus();
}

/** @param {User} u */
async function signInAs(u) {
  try {
    const res = await fetch('/api/demo/session', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ userId: u.id }),
    });
    const body = await res.json().catch(() => null);
    if (!res.ok || !body || !body.user) throw new Error(body?.error?.message || 'HTTP ' + res.status);
    const s = { user: { ...u, ...body.user }, guildId: body.guildId };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
    start(s);
  } catch (err) {
    signinError('Could not sign in: ' + /** @type {Error} */ (err).message);
  }
}

function showTokenForm() {
  const form = /** @type {HTMLFormElement} */ ($('signin-token'));
  form.hidden = false;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const token = /** @type {HTMLTextAreaElement} */ ($('token-input')).value.trim();
    const claims = decodeJwt(token);
    if (!claims || !claims.sub) return signinError('That is not a session JWT (it needs a `sub` claim).');
    const ch = /** @type {HTMLInputElement} */ ($('token-channel')).value.trim();
    /** @type {Session} */
    const s = { token, guildId: '', user: { id: String(claims.sub), username: claims.name || String(claims.sub) },
      channels: ch ? [{ id: ch, name: ch, kind: 'text' }] : [] };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
    start(s);
  });
  $('token-input').focus();
}

/** @param {string} token */
function decodeJwt(token) {
  try { return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))); } catch { return null; }
}
/** @param {string} text */
function signinError(text) { const el = $('signin-error'); el.textContent = text; el.hidden = false; }
/** @param {Storage} store @param {string} key */
function readJson(store, key) { try { return JSON.parse(store.getItem(key) || 'null'); } catch { return null; } }

$('signout').addEventListener('click', async () => {
  relay?.close();
  for (const k of [SESSION_KEY, FEED_KEY, CURRENT_KEY]) sessionStorage.removeItem(k);
  // Clears the HttpOnly session cookie, so the reload shows the sign-in again.
  try { await fetch('/auth/logout', { method: 'POST', credentials: 'same-origin' }); } catch { /* reload anyway */ }
  location.reload();
});

// ---- the app ---------------------------------------------------------------

/** @param {Session} s */
function start(s) {
  session = s;
  users.set(s.user.id, s.user);
  for (const c of s.channels || []) channels.set(c.id, c);
  sessionStorage.removeItem(FEED_KEY);
  // The channel shown before a reload, until `access` says whether it may still be viewed.
  current = sessionStorage.getItem(CURRENT_KEY) || (s.channels || []).find((c) => c.kind === 'text')?.id || '';

  $('signin').hidden = true;
  $('app').hidden = false;
  $('me-name').textContent = s.user.username;
  $('me-avatar').replaceWith(avatar(s.user.id, s.user.username));
  $('guild-name').textContent = s.token ? 'Signed in with a session token' : 'Demo server · simulated Discord';
  $('guild-name').title = s.guildId ? 'guild ' + s.guildId : '';

  relay = new RelayClient({ token: s.token });
  relay.onStatus((st) => { status = st; renderBadge(); });
  relay.on('*', (_ev, meta) => countEvent(meta));
  // The open channel's list is the feed's (see openFeed); these keep the rest of the page.
  relay.onMessage(onMessage);
  relay.onReaction((d) => { if (d.userId === session.user.id) myReactions.add(d.messageId + '|' + emojiKey(d.emoji)); });
  relay.onReactionRemove((d) => { if (d.userId === session.user.id) myReactions.delete(d.messageId + '|' + emojiKey(d.emoji)); });
  relay.onTyping((d) => {
    if (d.userId === session.user.id) return;
    if (!typing.has(d.channelId)) typing.set(d.channelId, new Map());
    typing.get(d.channelId)?.set(d.userId, Date.now() + TYPING_TTL_MS);
    renderTyping();
  });
  relay.onVoiceLeft(onVoiceLeft);
  relay.onVoiceJoined((d) => { if (d.userId === session.user.id) leavingOnPurpose = 0; });
  relay.onVoiceMembers(onVoiceMembers);
  relay.onAccess(onAccess);
  relay.onError((d) => toast(d.code === 'missing_permission'
    ? `Discord refused it: ${d.message || 'missing permission'}`
    : `Discord error${d.code ? ' (' + d.code + ')' : ''}: ${d.message || 'unknown'}`, 'error'));
  relay.onReset((d) => toast(d.reason === 'epoch'
    ? 'relay restarted — reloading the messages shown'
    : 'Some events were missed while you were away — reloading the messages shown', 'info'));
  relay.on('relay.resetComplete', (r) => {
    if (r.failed.length) toast('Could not reload the messages after the gap — switch channels to try again.', 'error');
  });

  setInterval(tick, 500);
  tick();
  renderChannels();
  renderFeed();
  renderBadge();
  if (!$('composer-box').hidden) $('composer-input').focus();
}

/**
 * A channel we did not know about (token sign-in without `access`). Under ACCESS=discord
 * only `access` adds channels. @param {string} id
 */
function learnChannel(id, kind = 'text') {
  if (!id || byAccess || channels.has(id)) return;
  channels.set(id, { id, name: kind === 'text' ? 'channel-' + id.slice(-4) : 'Voice ' + id.slice(-4), kind });
  if (kind === 'text') { if (!current) { selectChannel(id); } renderChannels(); }
}

/** Snowflakes in creation order. @param {{id: string}} a @param {{id: string}} b */
const byId = (a, b) => a.id.length - b.id.length || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * An `access` event: the channels this member may view in one guild, and what they may
 * do there. Lists, composer and buttons follow it at once; a channel taken away goes
 * (if it was open, the first text channel opens instead), one granted appears.
 * @param {import('/client/relay.js').Access} a
 */
function onAccess(a) {
  if (!a || typeof a.guildId !== 'string') return;
  if (!session.guildId) session.guildId = a.guildId;
  /** @type {Channel[]} */ const list = [];
  for (const [id, c] of Object.entries(a.channels || {})) {
    const kind = KIND[c.type];
    if (kind) list.push({ id, name: String(c.name || id), kind, parentId: c.parentId ?? null, can: Array.isArray(c.can) ? [...c.can] : [] });
  }
  accessByGuild.set(a.guildId, list.sort(byId));
  const before = channels.get(current);
  const was = before ? before.id + ':' + (before.can || ['*']).join() : '';
  byAccess = true;
  channels.clear();
  for (const g of accessByGuild.values()) for (const c of g) channels.set(c.id, c);
  for (const id of [...unread.keys()]) if (!channels.has(id)) unread.delete(id);
  if (!isChat(current)) current = firstChat();
  const now = channels.get(current);
  renderChannels();
  if (was !== (now ? now.id + ':' + (now.can || []).join() : '')) renderFeed();
  onVoiceMembers(relay.voiceChannels());
  if (!$('dropout').hidden) renderDropout();
}

/** The first text channel (threads only when there is none), or ''. */
function firstChat() {
  const all = [...channels.values()];
  return (all.find((c) => c.kind === 'text') || all.find((c) => c.kind === 'thread'))?.id || '';
}

/** @param {string} id */
function selectChannel(id) {
  current = id;
  unread.delete(id);
  try { sessionStorage.setItem(CURRENT_KEY, id); } catch { /* not kept over a reload */ }
  renderChannels();
  renderFeed();
}

// ---- status badge & live stats ---------------------------------------------

function renderBadge() {
  const [state, text] = status.stream !== 'open'
    ? ['reconnecting', status.stream === 'connecting' ? 'Connecting…' : 'Reconnecting…']
    : status.connected === true ? ['live', 'Live']
      : status.connected === false ? ['down', 'Discord link down'] : ['reconnecting', 'Connecting…'];
  const el = $('status-badge');
  el.dataset.state = state;
  el.textContent = text;
  el.title = state === 'live' ? 'Streaming from Discord' : state === 'down'
    ? 'relay lost its link to Discord; commands are queued until it is back' : 'Connecting to relay…';
}

/** @param {{sentAt?: string, id?: string}} [meta] */
function countEvent(meta) {
  const now = Date.now();
  stats.total++;
  stats.times.push(now);
  const sent = meta && meta.sentAt ? Date.parse(meta.sentAt) : NaN;
  if (Number.isFinite(sent)) { stats.lat.push(Math.max(0, now - sent)); if (stats.lat.length > 100) stats.lat.shift(); }
  if (meta && meta.id) stats.lastId = meta.id;
}

function tick() {
  const now = Date.now();
  while (stats.times.length && stats.times[0] < now - 30_000) stats.times.shift();
  const recent = stats.times.filter((t) => t >= now - 5000).length;
  $('stat-eps').textContent = (recent / 5).toFixed(1);
  const sorted = [...stats.lat].sort((a, b) => a - b);
  $('stat-p50').textContent = sorted.length ? fmtMs(sorted[(sorted.length - 1) >> 1]) : '–';
  $('stat-max').textContent = sorted.length ? fmtMs(sorted[sorted.length - 1]) : '–';
  $('stat-total').textContent = stats.total.toLocaleString();
  $('stat-last-id').textContent = stats.lastId || relay.lastEventId || '–';
  // 30 one-second bars
  const bars = new Array(30).fill(0);
  for (const t of stats.times) { const i = 29 - Math.floor((now - t) / 1000); if (i >= 0) bars[i]++; }
  const top = Math.max(4, ...bars);
  const spark = $('spark');
  if (spark.children.length !== 30) spark.replaceChildren(...bars.map(() => h('span')));
  bars.forEach((n, i) => { /** @type {HTMLElement} */ (spark.children[i]).style.height = (n / top) * 100 + '%'; });
  // typing expiry
  let changed = false;
  for (const m of typing.values()) for (const [u, exp] of m) if (exp < now) { m.delete(u); changed = true; }
  if (changed) renderTyping();
}
/** @param {number} ms */
function fmtMs(ms) { return ms < 1000 ? Math.round(ms) + ' ms' : (ms / 1000).toFixed(1) + ' s'; }

// ---- channels & feed -------------------------------------------------------

/** Text channels, each followed by its threads. */
function renderChannels() {
  const all = [...channels.values()];
  const text = all.filter((c) => c.kind === 'text');
  const threads = all.filter((c) => c.kind === 'thread');
  const items = [];
  for (const c of text) {
    items.push(channelItem(c));
    for (const t of threads) if (t.parentId === c.id) items.push(channelItem(t));
  }
  for (const t of threads) if (!text.some((c) => c.id === t.parentId)) items.push(channelItem(t));
  const list = $('channel-list');
  const old = [...list.children];
  const id = (/** @type {Element} */ li) => li.firstElementChild?.getAttribute('data-channel-id');
  // Same channels in the same order (an unread count changed, say): update the
  // buttons in place rather than replace them on every message elsewhere, so
  // what the user (or a test) is about to click stays put. The old button's
  // click listener selects the same channel id, so it is kept.
  if (old.length === items.length && old.every((li, i) => id(li) === id(items[i]))) {
    old.forEach((li, i) => {
      const [was, now] = [li.firstElementChild, items[i].firstElementChild];
      if (!was || !now) return;
      for (const a of [...was.attributes]) if (!now.hasAttribute(a.name)) was.removeAttribute(a.name);
      for (const a of [...now.attributes]) was.setAttribute(a.name, a.value);
      was.replaceChildren(...now.childNodes);
    });
    return;
  }
  list.replaceChildren(...items);
}

/** @param {Channel} c */
function channelItem(c) {
  const n = unread.get(c.id) || 0;
  const thread = c.kind === 'thread';
  const readOnly = byAccess && !may(c.id, 'send');
  return h('li', {}, h('button', {
    class: 'channel' + (thread ? ' thread' : '') + (c.id === current ? ' active' : '') + (n ? ' unread' : ''), type: 'button',
    'data-testid': thread ? 'thread-channel' : 'text-channel', 'data-channel-id': c.id,
    'data-parent-id': thread ? c.parentId : null, 'data-can': c.can ? c.can.join(' ') : null,
    'aria-current': c.id === current ? 'page' : null, title: readOnly ? 'Read only: you may not send messages here' : null,
    onclick: () => { selectChannel(c.id); if (!$('composer-box').hidden) $('composer-input').focus(); },
  }, h('span', { class: 'hash', text: thread ? '↳' : '#', 'aria-hidden': 'true' }), h('span', { class: 'channel-name', text: c.name }),
  readOnly ? h('span', { class: 'read-only', 'aria-label': 'read only' }, icon(SVG.lock)) : null,
  n ? h('span', { class: 'pill', text: n > 99 ? '99+' : String(n), 'aria-label': n + ' unread' }) : null));
}

/** The message box only where the member may send; a note where they may not. */
function renderComposer() {
  const canSend = !!current && may(current, 'send');
  $('composer-box').hidden = !canSend;
  $('composer-box').dataset.channelId = current;
  const locked = $('composer-locked');
  locked.hidden = canSend;
  locked.textContent = !current ? (byAccess ? 'There is no channel you may view.' : 'Waiting for a channel…')
    : may(current, 'view') ? `You can read #${channelName(current)} but not send messages here.` : '';
}

function renderFeed() {
  $('channel-title').textContent = current ? channelName(current) : 'no channel';
  /** @type {HTMLTextAreaElement} */ ($('composer-input')).placeholder = current ? 'Message #' + channelName(current) : 'No channel yet';
  renderComposer();
  if (feed?.channelId !== current) openFeed();
  else renderMessages(true);
  renderTyping();
}

/**
 * Shows `current` through a fresh `ChannelFeed`: its last PAGE messages at once (from
 * the gateway's window, or Discord when the window does not hold them), live events on
 * top, older pages on scroll-up. The client refetches it by itself after `stream.reset`.
 */
function openFeed() {
  feedOff();
  feed?.stop();
  rows.clear();
  $('message-feed').replaceChildren();
  feed = null;
  feedOff = () => {};
  if (!current) return renderMessages(true);
  const f = new ChannelFeed(relay, current, { limit: PAGE });
  feed = f;
  feedOff = f.subscribe(() => { if (feed === f) renderMessages(false); });
  f.start();
  renderMessages(true);
}

/** Holds the top of the list (kept, so rows below it never move). */
const topEl = h('div', { class: 'feed-top' });
/** The top of the list: the channel's start, or a note that older messages exist. */
function feedTop() {
  const s = feed?.getState();
  if (!current) return h('div', { class: 'feed-start' }, h('h2', { text: 'Waiting for a channel' }));
  if (s && s.error && !s.messages.length) {
    return h('div', { class: 'feed-note error', 'data-testid': 'history-error', role: 'alert' },
      h('span', { text: explain(s.error, 'read the history of this channel') }), ' ',
      h('button', { class: 'btn btn-small', type: 'button', text: 'Retry', onclick: () => openFeed() }));
  }
  if (!s || s.loading) return h('div', { class: 'feed-note muted', 'data-testid': 'history-loading', role: 'status', text: 'Loading messages…' });
  if (s.hasMore) {
    return h('div', { class: 'feed-note muted', 'data-testid': 'history-more', role: 'status',
      text: s.loadingOlder ? 'Loading older messages…' : s.error ? explain(s.error, 'read the history of this channel') : 'Scroll up for older messages' });
  }
  return h('div', { class: 'feed-start', 'data-testid': 'history-start' },
    h('div', { class: 'feed-start-icon', text: '#', 'aria-hidden': 'true' }),
    h('h2', { text: 'Welcome to #' + channelName(current) }),
    h('p', { class: 'muted', text: 'This is the start of the channel. Messages appear here live as they are posted in Discord; what you send goes out through relay.' }));
}

/**
 * Draws the feed's state: rows are kept by message id and redrawn only when their
 * message (or its neighbour, or the member's permissions) changed, so a live event
 * touches one row. Older messages added on top keep what is on screen in place.
 * @param {boolean} force redraw every row (the channel's permissions changed)
 */
function renderMessages(force) {
  const el = $('message-feed');
  const scroller = $('feed-scroll');
  const s = feed?.getState();
  const list = s ? s.messages : [];
  const near = isNearBottom();
  // The first row still on the page after this render anchors the scroll position.
  const anchor = list.find((m) => rows.has(m.id));
  const anchorRow = anchor && rows.get(anchor.id)?.row;
  const anchorTop = anchorRow ? anchorRow.offsetTop : 0;
  const hadRows = rows.size > 0;
  const lastBefore = el.lastElementChild?.getAttribute('data-message-id') || '';
  const canReact = may(current, 'react');
  topEl.replaceChildren(feedTop());
  /** @type {HTMLElement[]} */ const wanted = [topEl];
  const seen = new Set();
  list.forEach((m, i) => {
    seen.add(m.id);
    const prev = list[i - 1];
    const cont = !!prev && prev.author.id === m.author.id && Date.parse(m.timestamp) - Date.parse(prev.timestamp) < 5 * 60_000;
    const key = (cont ? 'c' : 'h') + (canReact ? 'r' : '') + m.reactions.map((r) => myReactions.has(m.id + '|' + emojiKey(r.emoji)) ? 1 : 0).join('');
    const had = rows.get(m.id);
    if (!force && had && had.m === m && had.key === key) { wanted.push(had.row); return; }
    if (!users.has(m.author.id)) users.set(m.author.id, { id: m.author.id, username: m.author.username });
    const row = had?.row || h('article', { 'data-testid': 'message', 'data-message-id': m.id });
    row.className = 'msg' + (cont ? ' cont' : '');
    fillRow(row, m, cont);
    rows.set(m.id, { row, m, key });
    wanted.push(row);
  });
  for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
  // Put the wanted nodes in order, moving only what is out of place.
  let at = el.firstChild;
  for (const node of wanted) {
    if (at === node) at = at.nextSibling;
    else el.insertBefore(node, at);
  }
  while (at) { const next = at.nextSibling; at.remove(); at = next; }
  const lastAfter = list[list.length - 1];
  if (!hadRows || (lastAfter && lastAfter.id !== lastBefore && (near || lastAfter.author.id === session.user.id))) {
    scroller.scrollTop = scroller.scrollHeight;
  } else if (anchorRow && anchorRow.isConnected) {
    scroller.scrollTop += anchorRow.offsetTop - anchorTop;
  }
  el.dataset.state = !s ? 'empty' : s.loading ? 'loading' : s.loadingOlder ? 'loading-older' : 'ready';
  maybeLoadOlder();
}

/** Scrolled to the top (or the list does not fill the view yet): the next older page. */
function maybeLoadOlder() {
  const s = feed?.getState();
  if (!feed || !s || s.loading || s.loadingOlder || !s.hasMore || s.error) return;
  const scroller = $('feed-scroll');
  if (scroller.scrollTop < OLDER_AT_PX || scroller.scrollHeight <= scroller.clientHeight) void feed.loadOlder();
}
$('feed-scroll').addEventListener('scroll', () => {
  const s = feed?.getState();
  // A failed older page is retried by scrolling up again.
  if (s && s.error && s.messages.length && $('feed-scroll').scrollTop < OLDER_AT_PX) void feed?.loadOlder();
  else maybeLoadOlder();
}, { passive: true });

/** Custom emoji by `name:id`, unicode by itself (what add-reaction takes). @param {{id?: string|null, name?: string|null}} e */
const emojiKey = (e) => (e?.id ? `${e.name ?? ''}:${e.id}` : e?.name ?? '');

/** @param {HTMLElement} row @param {Message} m @param {boolean} cont */
function fillRow(row, m, cont) {
  const reactions = m.reactions.filter((r) => r.count > 0);
  const relayed = m.via === 'relay';
  row.replaceChildren(
    cont ? h('time', { class: 'msg-gutter-time', text: clock(m.timestamp), dateTime: m.timestamp }) : avatar(m.author.id, m.author.username),
    h('div', { class: 'msg-body' },
      cont ? null : h('header', { class: 'msg-head' },
        h('span', { class: 'msg-author', text: m.author.username, style: `--h:${hue(m.author.id)}` }),
        relayed ? h('span', { class: 'tag tag-relay', text: 'via relay', title: 'Sent from the web through relay' })
          : m.author.bot ? h('span', { class: 'tag', text: 'BOT' }) : null,
        h('time', { class: 'msg-time', text: clock(m.timestamp), dateTime: m.timestamp, title: new Date(m.timestamp).toLocaleString() })),
      h('div', { class: 'msg-content', text: m.content }, m.editedTimestamp ? h('span', { class: 'edited', text: ' (edited)' }) : null),
      reactions.length ? h('div', { class: 'reactions' }, ...reactions.map((r) => {
        const key = emojiKey(r.emoji);
        const shown = r.emoji.id ? ':' + (r.emoji.name || 'emoji') + ':' : r.emoji.name || '?';
        return h('button', {
          class: 'chip' + (myReactions.has(m.id + '|' + key) ? ' mine' : ''), type: 'button', disabled: !may(m.channelId, 'react'),
          title: `${shown} — ${r.count} reaction${r.count === 1 ? '' : 's'}`, 'aria-label': `${shown} ${r.count}`,
          'data-testid': 'reaction', 'data-emoji': key, onclick: () => react(m, key),
        }, h('span', { text: shown }), h('span', { class: 'chip-n', text: String(r.count) }));
      })) : null),
    // replaceChildren would print a null: leave the toolbar out instead.
    ...(may(m.channelId, 'react') ? [h('div', { class: 'msg-tools', role: 'toolbar', 'aria-label': 'Add reaction', 'data-testid': 'reaction-tools' },
      ...REACTIONS.map((e) => h('button', { type: 'button', class: 'tool', text: e, title: 'React with ' + e, onclick: () => react(m, e) })))] : []));
}

/** Messages of other channels count as unread; the open channel's come through its feed. @param {any} d messageCreate data */
function onMessage(d) {
  learnChannel(d.channelId);
  if (!session.guildId && d.guildId) session.guildId = d.guildId;
  const author = { id: d.author?.id || '0', username: d.author?.username || 'unknown' };
  if (!users.has(author.id)) users.set(author.id, author);
  typing.get(d.channelId)?.delete(author.id);
  if (d.channelId !== current) {
    unread.set(d.channelId, (unread.get(d.channelId) || 0) + 1);
    renderChannels();
  } else renderTyping();
}

/** @param {Message} m @param {string} emoji */
async function react(m, emoji) {
  try { await relay.addReaction(m.channelId, m.id, emoji); } catch (err) { toast(explain(err, 'add reactions'), 'error'); }
}

function renderTyping() {
  const now = Date.now();
  const who = [...(typing.get(current) || new Map())].filter(([u, exp]) => exp > now && u !== session.user.id).map(([u]) => userName(u));
  const el = $('typing');
  el.replaceChildren();
  if (!who.length) return;
  const text = who.length === 1 ? `${who[0]} is typing…` : who.length === 2 ? `${who[0]} and ${who[1]} are typing…` : 'Several people are typing…';
  el.append(h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), h('span', { text }));
}

function isNearBottom() {
  const s = $('feed-scroll');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

// ---- composer --------------------------------------------------------------

const input = /** @type {HTMLTextAreaElement} */ ($('composer-input'));
input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
});
input.addEventListener('input', () => {
  input.style.height = 'auto';
  input.style.height = Math.min(input.scrollHeight, 200) + 'px';
  const n = [...input.value].length;
  const count = $('composer-count');
  count.hidden = n < 1800;
  count.textContent = `${n}/2000`;
  count.classList.toggle('over', n > 2000);
  const now = Date.now();
  if (input.value.trim() && current && may(current, 'send') && now - lastTypingSent > TYPING_EVERY_MS) {
    lastTypingSent = now;
    relay.typingStart(current).catch(() => { /* typing is best effort */ });
  }
});
$('composer').addEventListener('submit', (e) => { e.preventDefault(); send(); });

let countdown = 0;
/** @param {string} text @param {'error'|'info'|''} [kind] */
function composerNote(text, kind = 'error', permission = '') {
  clearInterval(countdown);
  const el = $('composer-error');
  el.textContent = text;
  el.dataset.kind = kind;
  if (permission) el.dataset.permission = permission; else delete el.dataset.permission;
}

async function send() {
  const content = input.value;
  if (!content.trim() || !current) return;
  const btn = /** @type {HTMLButtonElement} */ ($('composer-send'));
  btn.disabled = true;
  try {
    const res = await relay.sendMessage(current, content);
    input.value = '';
    input.dispatchEvent(new Event('input'));
    lastTypingSent = 0;
    composerNote(res.queued ? 'relay is reconnecting to Discord; your message is queued and will be sent when the link is back.' : '', res.queued ? 'info' : '');
  } catch (err) {
    composerNote(explain(err, 'send messages in this channel'), 'error', err instanceof RelayError && err.permission || '');
    if (err instanceof RelayError && err.status === 429 && err.retryAfterMs) {
      const until = Date.now() + err.retryAfterMs;
      countdown = setInterval(() => {
        const left = Math.ceil((until - Date.now()) / 1000);
        if (left <= 0) { composerNote(''); return; }
        $('composer-error').textContent = `Slow down — try again in ${left} s`;
      }, 250);
    }
  } finally {
    btn.disabled = false;
    input.focus();
  }
}

/**
 * A readable sentence for a failed command.
 * @param {unknown} err @param {string} what e.g. "send messages in this channel"
 */
function explain(err, what) {
  if (!(err instanceof RelayError)) return 'Something went wrong: ' + String(err);
  switch (err.status) {
    case 0: return 'relay is unreachable — check your connection.';
    case 400: return err.issues[0]?.message ? capitalize(err.issues[0].message) : err.message;
    case 401: return 'Your session has expired — switch user to sign in again.';
    case 403: return err.permission
      ? `You don't have permission to ${what}: Discord permission ${err.permission} is missing.`
      : `You don't have permission to ${what}.`;
    case 413: return 'That is too large to send.';
    case 429: return `Slow down — try again in ${Math.max(1, Math.ceil((err.retryAfterMs || 1000) / 1000))} s`;
    case 502: return 'Discord refused it: ' + err.message;
    case 503: return 'relay is reconnecting to Discord and its queue is full — try again in a moment.';
    case 504: return "Discord didn't answer in time; it may still go through.";
    default: return err.message || 'Request failed (' + err.status + ')';
  }
}
/** @param {string} s */
function capitalize(s) { return s.charAt(0).toUpperCase() + s.slice(1); }

// ---- voice -----------------------------------------------------------------

/** @param {Map<string, import('/client/relay.js').VoiceMember[]>} byChannel */
function onVoiceMembers(byChannel) {
  myVoice = null;
  for (const [id, members] of byChannel) {
    learnChannel(id, 'voice');
    for (const m of members) {
      if (m.username && !users.has(m.userId)) users.set(m.userId, { id: m.userId, username: m.username });
      if (!session.guildId && m.guildId) session.guildId = m.guildId;
      if (m.userId === session.user.id) myVoice = id;
    }
  }
  $('me-voice').textContent = myVoice ? '🔊 ' + channelName(myVoice) : 'Not in voice';
  renderVoice(byChannel);
}

/**
 * relay moves members with the bot (voiceMove), which Discord allows only with Move
 * Members: in the channel left (contract §8) and, with Connect, in the one entered.
 * @param {string} target
 */
const mayEnter = (target) => may(target, 'connect') && may(target, 'moveMembers') && (!myVoice || may(myVoice, 'moveMembers'));

/** @param {Map<string, any[]>} byChannel */
function renderVoice(byChannel) {
  const voice = [...channels.values()].filter((c) => c.kind === 'voice');
  const me = session.user.id;
  $('voice-list').replaceChildren(...voice.map((c) => {
    const members = byChannel.get(c.id) || [];
    const mine = myVoice === c.id;
    const [canMove, canMute] = [may(c.id, 'moveMembers'), may(c.id, 'muteMembers')];
    let action = null;
    if (mine && canMove) action = h('button', { class: 'btn btn-small btn-danger', type: 'button', text: 'Leave', 'data-testid': 'voice-leave', onclick: () => voiceMove(null) });
    else if (!mine && mayEnter(c.id)) action = h('button', { class: 'btn btn-small', type: 'button', text: myVoice ? 'Move here' : 'Join', 'data-testid': 'voice-join', onclick: () => voiceMove(c.id) });
    else if (!mine && may(c.id, 'connect')) action = h('span', { class: 'voice-locked muted', title: 'relay joins you through the bot, which needs the Move Members permission; join in Discord instead', 'aria-label': 'Joining through relay needs Move Members' }, icon(SVG.lock));
    return h('li', { class: 'voice-channel' + (mine ? ' mine' : ''), 'data-testid': 'voice-channel', 'data-channel-id': c.id, 'data-can': c.can ? c.can.join(' ') : null },
      h('div', { class: 'voice-head' }, icon(SVG.speaker), h('span', { class: 'voice-name', text: c.name }),
        h('span', { class: 'voice-count muted small', text: members.length ? String(members.length) : '' }), action),
      h('ul', { class: 'voice-members' }, ...members.map((m) => {
        const isMuted = muted.get(m.userId) === true;
        const name = m.username || userName(m.userId);
        return h('li', { class: 'voice-member' + (m.userId === me ? ' me' : ''), 'data-testid': 'voice-member', 'data-user-id': m.userId },
          avatar(m.userId, name, 'avatar-sm'), h('span', { class: 'voice-member-name', text: name }),
          canMove && m.userId !== me ? h('button', {
            class: 'icon-btn disconnect', type: 'button', 'data-testid': 'voice-disconnect',
            title: 'Disconnect ' + name + ' from voice', 'aria-label': 'Disconnect ' + name,
            onclick: () => voiceDisconnect(m.userId, name),
          }, icon(SVG.out)) : null,
          canMute ? h('button', {
            class: 'icon-btn mute' + (isMuted ? ' on' : ''), type: 'button', 'aria-pressed': String(isMuted), 'data-testid': 'voice-mute',
            title: (isMuted ? 'Unmute ' : 'Server-mute ') + name, 'aria-label': (isMuted ? 'Unmute ' : 'Mute ') + name,
            onclick: () => voiceMute(m.userId, !isMuted),
          }, icon(isMuted ? SVG.micOff : SVG.mic)) : null);
      })));
  }));
}

/** A moderator moves someone else out of voice. @param {string} userId @param {string} name */
async function voiceDisconnect(userId, name) {
  try {
    const res = await relay.moveMember(session.guildId, userId, null);
    toast(res.queued ? 'relay is reconnecting to Discord; the move is queued.' : `${name} was disconnected from voice.`, 'info');
  } catch (err) { toast(explain(err, 'move voice members'), 'error'); }
}

/** @param {string|null} channelId */
async function voiceMove(channelId) {
  // A deliberate leave (or a move, should Discord report it as leave + join) is no dropout.
  leavingOnPurpose = Date.now();
  try {
    const res = await relay.moveMember(session.guildId, session.user.id, channelId);
    if (res.queued) toast('relay is reconnecting to Discord; the move is queued.', 'info');
    return true;
  } catch (err) {
    leavingOnPurpose = 0;
    toast(explain(err, 'move voice members'), 'error');
    return false;
  }
}

/** @param {string} userId @param {boolean} mute */
async function voiceMute(userId, mute) {
  try {
    const res = await relay.muteMember(session.guildId, userId, mute);
    muted.set(userId, mute);
    renderVoice(relay.voiceChannels());
    if (res.queued) toast('relay is reconnecting to Discord; the mute is queued.', 'info');
  } catch (err) { toast(explain(err, 'mute voice members'), 'error'); }
}

/** voice.left arrives before onVoiceMembers, so `myVoice` still names the channel we were in. @param {any} d */
function onVoiceLeft(d) {
  if (d.userId !== session.user.id) return;
  const was = d.channelId || myVoice;
  const deliberate = leavingOnPurpose && Date.now() - leavingOnPurpose < 10_000;
  leavingOnPurpose = 0;
  if (was && !deliberate) openDropout(was);
}

// ---- dropout dialog ----------------------------------------------------------

let dropoutChannel = '';
/** @type {Element|null} */ let dropoutReturnFocus = null;
/** @param {string} channelId */
function openDropout(channelId) {
  dropoutChannel = channelId;
  renderDropout();
  $('dropout-error').hidden = true;
  dropoutReturnFocus = document.activeElement;
  $('dropout').hidden = false;
  ($('dropout-rejoin').hidden ? $('dropout-leave') : $('dropout-rejoin')).focus();
}
/** Rejoin only where relay may move the member back (see `mayEnter`). */
function renderDropout() {
  $('dropout-channel').textContent = channelName(dropoutChannel);
  $('dropout-rejoin').hidden = !mayEnter(dropoutChannel);
}
function closeDropout() {
  $('dropout').hidden = true;
  if (dropoutReturnFocus instanceof HTMLElement) dropoutReturnFocus.focus();
}
$('dropout-leave').addEventListener('click', closeDropout);
$('dropout-rejoin').addEventListener('click', async () => {
  const btn = /** @type {HTMLButtonElement} */ ($('dropout-rejoin'));
  btn.disabled = true;
  try {
    const res = await relay.moveMember(session.guildId, session.user.id, dropoutChannel);
    if (res.queued) toast('relay is reconnecting to Discord; you will rejoin when the link is back.', 'info');
    closeDropout();
  } catch (err) {
    const el = $('dropout-error');
    el.textContent = explain(err, 'move voice members');
    el.hidden = false;
    toast(el.textContent, 'error');
  } finally { btn.disabled = false; }
});
$('dropout').addEventListener('keydown', (e) => {
  if (e.key === 'Escape') { e.preventDefault(); closeDropout(); }
  if (e.key === 'Tab') { // keep focus inside the dialog
    const [first, last] = [$('dropout-rejoin').hidden ? $('dropout-leave') : $('dropout-rejoin'), $('dropout-leave')];
    if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
  }
});

// ---- toasts ------------------------------------------------------------------

/** @param {string} text @param {'error'|'info'} kind */
function toast(text, kind) {
  const el = h('div', { class: 'toast ' + kind, role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'toast', text });
  $('toasts').append(el);
  setTimeout(() => el.classList.add('out'), 5000);
  setTimeout(() => el.remove(), 5400);
}

boot();
