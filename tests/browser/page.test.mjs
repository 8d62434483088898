// Browser tests of the relay demo page, driving Debian's chromium via playwright-core.
//
// Environment:
//   RELAY_URL        the edge serving the page (default http://127.0.0.1:3000), in demo mode
//   SIM_CONTROL_URL  control API of the simulated Discord (tests 4–7, 9, 10 and 11 need it):
//                      POST $SIM_CONTROL_URL/voice-leave   {"userId": "…"}  the user drops out of voice
//                      POST $SIM_CONTROL_URL/set-roles     {"userId": "…", "roleIds": ["…"]}  replaces the member's roles
//                      POST $SIM_CONTROL_URL/timeout       {"userId": "…", "seconds": n}  times the member out (0 lifts it)
//                      POST $SIM_CONTROL_URL/link-drop     the gateway link goes down (for a few seconds)
//                      POST $SIM_CONTROL_URL/link-restore  the link comes back now
//                    The demo runs ACCESS=discord: the page lists what the stream's `access`
//                    events allow. Its own schedule flips Ada's Moderator role every 45 s;
//                    tests/tests/browser-demo-page.rs turns that off (a `relay demo` started
//                    by hand keeps it, and may race tests 3, 4 and 10).
//   BRIDGE_URL       an edge with ENABLE_WS_BRIDGE=true (may equal RELAY_URL); required
//   SESSION_TOKEN    a session JWT accepted by BRIDGE_URL; required
//   REPLAY_CAPACITY  the edge's REPLAY_CAPACITY (default 4096); test 13 floods past it.
//                    The control API also posts, seeds history, reacts, edits, deletes and
//                    lists a channel's message ids (tests/browser/README.md has the table).
// Every variable is required: a missing one fails the run rather than skipping
// tests (tests/tests/browser-demo-page.rs sets them all).
//   CHROMIUM         browser binary (default /usr/bin/chromium)
//
// The tests share one page and run in order: each builds on the signed-in page of the first
// (Ada, a plain member; test 4 makes her a Moderator, which voice moves need, and test 10
// takes it away again).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import net from 'node:net';
import { launchChromium, pathOf, watchedPage } from './chromium.mjs';

const RELAY_URL = (process.env.RELAY_URL || 'http://127.0.0.1:3000').replace(/\/$/, '');
const SIM = (process.env.SIM_CONTROL_URL || '').replace(/\/$/, '');
const BRIDGE_URL = (process.env.BRIDGE_URL || '').replace(/\/$/, '');
const SESSION_TOKEN = process.env.SESSION_TOKEN || '';
for (const [name, value] of Object.entries({ SIM_CONTROL_URL: SIM, BRIDGE_URL, SESSION_TOKEN })) {
  if (!value) throw new Error(`${name} must be set (see the header of this file)`);
}
const T = 15_000; // every wait is bounded by this
const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../artifacts');
// The simulated guild's roles (runtime/src/sim_discord/guild.rs, `ids`).
const ROLE_MEMBER = '820675640033280001';
const ROLE_MODERATOR = '820675891691520001';

/** @type {import('playwright-core').Browser} */ let browser;
/** @type {import('playwright-core').BrowserContext} */ let context;
/** @type {import('playwright-core').Page} */ let page;
/** @type {{ stream: string[], ws: string[], sockets: number, errors: string[] }} */ let seen;
let me = '';

const uniq = (/** @type {string} */ p) => `${p} ${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/** POSTs JSON to the simulated Discord's control API. @param {string} what @param {object} [body] */
async function sim(what, body = {}) {
  const res = await fetch(`${SIM}/${what}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(T),
  });
  assert.ok(res.ok, `sim ${what}: HTTP ${res.status}`);
}

const badge = () => page.locator('[data-testid=status-badge]');
const waitBadge = (/** @type {string} */ text) => page.waitForFunction(
  (t) => document.querySelector('[data-testid=status-badge]')?.textContent === t, text, { timeout: T });
const textChannel = (/** @type {string} */ name, p = page) =>
  p.locator('[data-testid=text-channel]', { has: p.locator('.channel-name', { hasText: new RegExp(`^${name}$`) }) });
const canOf = async (/** @type {import('playwright-core').Locator} */ l) => ((await l.getAttribute('data-can')) || '').split(' ').filter(Boolean);
const member = (/** @type {string} */ channelId) =>
  page.locator(`[data-testid=voice-channel][data-channel-id="${channelId}"] [data-testid=voice-member][data-user-id="${me}"]`);

/** Clicks Join/Move here on the first voice channel and waits until the signed-in user is listed there. */
async function joinFirstVoiceChannel() {
  const channel = page.locator('[data-testid=voice-channel]').first();
  await channel.waitFor({ timeout: T });
  const channelId = /** @type {string} */ (await channel.getAttribute('data-channel-id'));
  if (await member(channelId).count() === 0) {
    await channel.getByRole('button', { name: /^(Join|Move here)$/ }).click({ timeout: T });
    await member(channelId).waitFor({ timeout: T });
  }
  return { channelId, name: (await channel.locator('.voice-name').textContent()) || '' };
}

before(async () => {
  browser = await launchChromium();
  ({ context, page, seen } = await watchedPage(browser, { width: 1280, height: 760 }));
});

after(async () => { await browser?.close(); });

test('1. loads, signs in, opens exactly one stream and no WebSocket, goes Live', { timeout: 60_000 }, async () => {
  await page.goto(RELAY_URL + '/', { timeout: T });
  const first = page.locator('[data-testid=signin-user]').first();
  await first.waitFor({ timeout: T });
  me = /** @type {string} */ (await first.getAttribute('data-user-id'));
  assert.match(me, /^\d{1,20}$/);
  await first.click();
  await waitBadge('Live');
  assert.equal(seen.stream.length, 1, `stream requests: ${seen.stream.join(', ')}`);
  assert.equal(seen.ws.length, 0, 'no /api/ws request');
  assert.equal(seen.sockets, 0, 'no WebSocket opened');
  // Resource timing lists a request once its response has ended, so the live stream
  // itself may not be there yet; what is there must not show a second stream or a socket.
  const entries = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname));
  assert.ok(entries.filter((p) => p === '/api/stream').length <= 1, 'at most one /api/stream in resource timing');
  assert.equal(entries.filter((p) => p === '/api/ws').length, 0, 'no /api/ws in resource timing');
});

test('2. a message from the composer arrives in the feed over SSE, as text', { timeout: 60_000 }, async () => {
  const text = uniq('hello from the browser test');
  const input = page.locator('[data-testid=composer-input]');
  await input.fill(text);
  await input.press('Shift+Enter');
  await page.keyboard.insertText('<b>second line</b>');
  await input.press('Enter');
  const row = page.locator('[data-testid=message]', { hasText: text });
  await row.waitFor({ timeout: T });
  assert.match(await row.getAttribute('data-message-id') || '', /^\d{1,20}$/);
  assert.equal(await row.locator('.msg-content').evaluate((el) => el.firstChild?.textContent), `${text}\n<b>second line</b>`);
  assert.equal(await page.locator('[data-testid=message-feed] b').count(), 0, 'user text is never parsed as HTML');
  assert.equal(await input.inputValue(), '', 'composer is cleared after sending');
  assert.equal(await page.locator('[data-testid=composer-error]').textContent(), '');
});

test('3. a plain member sees only the channels and buttons `access` allows', { timeout: 60_000 }, async () => {
  await sim('set-roles', { userId: me, roleIds: [ROLE_MEMBER] }); // as the guild starts; idempotent
  const general = textChannel('general');
  await general.waitFor({ timeout: T });
  assert.deepEqual(await canOf(general), ['view', 'history', 'send', 'react', 'connect']);
  assert.equal(await textChannel('moderators').count(), 0, '#moderators is not listed for a plain member');
  // The thread sits under its parent channel.
  const thread = page.locator('[data-testid=thread-channel]', { hasText: 'release-planning' });
  await thread.waitFor({ timeout: T });
  assert.equal(await thread.getAttribute('data-parent-id'), await general.getAttribute('data-channel-id'));
  // #announcements: everyone may read, only moderators may write.
  const announcements = textChannel('announcements');
  assert.ok(!(await canOf(announcements)).includes('send'));
  await announcements.click();
  await page.locator('[data-testid=composer-locked]').waitFor({ state: 'visible', timeout: T });
  assert.ok(await page.locator('[data-testid=composer]').isHidden(), 'no composer in #announcements');
  assert.match(await page.locator('[data-testid=composer-locked]').textContent() || '', /can read #announcements but not send/);
  // Voice: may connect, but relay moves members with the bot, which needs Move Members.
  const lobby = page.locator('[data-testid=voice-channel]').first();
  await lobby.waitFor({ timeout: T });
  assert.ok((await canOf(lobby)).includes('connect'));
  assert.ok(!(await canOf(lobby)).includes('moveMembers'));
  assert.equal(await page.locator('[data-testid=voice-join], [data-testid=voice-mute], [data-testid=voice-disconnect]').count(), 0,
    'no Join/Move, mute or disconnect buttons without Move/Mute Members');
  await general.click();
  await page.locator('[data-testid=composer]').waitFor({ state: 'visible', timeout: T });
  assert.ok(await page.locator('[data-testid=composer-locked]').isHidden());
});

test('4. a 403 missing_permission names the permission; a role granted shows up live', { timeout: 60_000 }, async () => {
  // The page never offers a send where `access` forbids it, so make one: the request
  // leaves for #general and is redirected to #announcements on the way.
  const announcementsId = await textChannel('announcements').getAttribute('data-channel-id');
  const isSend = (/** @type {URL} */ u) => u.pathname === '/api/send-message';
  await page.route(isSend, (route) => {
    const body = JSON.parse(route.request().postData() || '{}');
    return route.continue({ postData: JSON.stringify({ ...body, channelId: announcementsId }) });
  });
  const input = page.locator('[data-testid=composer-input]');
  try {
    await input.fill(uniq('not allowed in announcements'));
    await input.press('Enter');
    const error = page.locator('[data-testid=composer-error]');
    await page.waitForFunction(() => /SEND_MESSAGES/.test(document.querySelector('[data-testid=composer-error]')?.textContent || ''), null, { timeout: T });
    assert.equal(await error.getAttribute('data-permission'), 'SEND_MESSAGES');
  } finally {
    await page.unroute(isSend);
    await input.fill('');
  }

  // Ada becomes a Moderator in Discord: #moderators appears, voice moves are offered.
  const granted = Date.now();
  await sim('set-roles', { userId: me, roleIds: [ROLE_MEMBER, ROLE_MODERATOR] });
  const moderators = textChannel('moderators');
  await moderators.waitFor({ timeout: T });
  const tookMs = Date.now() - granted;
  assert.ok((await canOf(moderators)).includes('send'));
  // Moderators may post in #announcements on Discord, but the bot may not, and relay
  // grants nobody more than the bot has (CONTRACT.md §8).
  assert.ok(!(await canOf(textChannel('announcements'))).includes('send'));
  await page.locator('[data-testid=voice-join]').first().waitFor({ timeout: T });
  assert.ok((await canOf(page.locator('[data-testid=voice-channel]').first())).includes('moveMembers'));
  await moderators.click();
  await page.locator('[data-testid=composer]').waitFor({ state: 'visible', timeout: T });
  assert.equal(await page.locator('#channel-title').textContent(), 'moderators');
  console.log(`# #moderators appeared ${tookMs} ms after the role was granted`);
  await textChannel('general').click();
});

test('5. a voice dropout opens the dialog; Esc closes it, Rejoin moves back', { timeout: 90_000 }, async () => {
  const dialog = page.locator('[data-testid=dropout-dialog]');
  let { channelId, name } = await joinFirstVoiceChannel();
  await sim('voice-leave', { userId: me });
  await dialog.waitFor({ state: 'visible', timeout: T });
  assert.match(await dialog.textContent() || '', /Disconnected from Voice Channel/);
  assert.ok((await dialog.textContent() || '').includes(name), 'dialog names the channel');
  assert.equal(await dialog.getAttribute('role'), 'dialog');
  assert.equal(await dialog.getAttribute('aria-modal'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'dropout-rejoin');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden', timeout: T });
  await member(channelId).waitFor({ state: 'detached', timeout: T });

  ({ channelId } = await joinFirstVoiceChannel());
  await sim('voice-leave', { userId: me });
  await dialog.waitFor({ state: 'visible', timeout: T });
  await page.locator('[data-testid=dropout-rejoin]').click();
  await member(channelId).waitFor({ timeout: T });
  await dialog.waitFor({ state: 'hidden', timeout: T });
});

test('6. the badge shows the link going down and coming back', { timeout: 60_000 }, async () => {
  // Record every badge state, so a short drop is not missed between polls.
  await page.evaluate(() => {
    const el = /** @type {HTMLElement} */ (document.querySelector('[data-testid=status-badge]'));
    const w = /** @type {any} */ (window);
    w.__badge = [el.dataset.state];
    new MutationObserver(() => w.__badge.push(el.dataset.state)).observe(el, { attributes: true, childList: true });
  });
  await sim('link-drop');
  await page.waitForFunction(() => /** @type {any} */ (window).__badge.some((s) => s !== 'live'), null, { timeout: T });
  await sim('link-restore');
  await waitBadge('Live');
  assert.equal(await badge().getAttribute('data-state'), 'live');
});

test('7. a reload resumes from the last event id without losing events', { timeout: 60_000 }, async () => {
  await page.waitForFunction(() => /\d/.test(document.querySelector('[data-testid=last-event-id]')?.textContent || ''), null, { timeout: T });
  const lastBefore = /** @type {string} */ (await page.locator('[data-testid=last-event-id]').textContent());
  const cookie = (await context.cookies(RELAY_URL)).map((c) => `${c.name}=${c.value}`).join('; ');
  assert.match(cookie, /relay_session=/);
  const channelId = await page.locator('.channel.active').getAttribute('data-channel-id');
  const gapText = uniq('sent while the page was reloading');

  // Hold the new page's stream request until a message has been published in the gap.
  /** @type {import('playwright-core').Request[]} */ const held = [];
  /** @type {() => void} */ let release = () => {};
  const gate = new Promise((r) => { release = () => r(undefined); });
  const isStream = (/** @type {URL} */ u) => u.pathname === '/api/stream';
  await page.route(isStream, async (route) => { held.push(route.request()); await gate; await route.continue(); });
  const reloading = page.reload({ timeout: T });
  try {
    const deadline = Date.now() + T;
    while (!held.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(held.length, 1, 'the reloaded page opened its stream');
    const res = await fetch(RELAY_URL + '/api/send-message', {
      method: 'POST', headers: { 'Content-Type': 'application/json', Cookie: cookie },
      body: JSON.stringify({ channelId, content: gapText }), signal: AbortSignal.timeout(T),
    });
    assert.ok(res.status === 200 || res.status === 202, `send-message in the gap: HTTP ${res.status}`);
  } finally {
    release();
  }
  await reloading;
  await page.unroute(isStream);

  const req = held[0];
  const url = new URL(req.url());
  const resumeId = url.searchParams.get('lastEventId') || (await req.allHeaders())['last-event-id'];
  assert.ok(resumeId, `the stream request carries lastEventId: ${req.url()}`);
  const [epochBefore, seqBefore] = lastBefore.split('-');
  const [epochAfter, seqAfter] = resumeId.split('-');
  assert.equal(epochAfter, epochBefore, 'same process');
  assert.ok(Number(seqAfter) >= Number(seqBefore), `resumes at or after ${lastBefore}, got ${resumeId}`);
  await page.locator('[data-testid=message]', { hasText: gapText }).waitFor({ timeout: T });
  await waitBadge('Live');
});

test('8. screenshot of the demo page', { timeout: 30_000 }, async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo-page.png') });
  assert.deepEqual(seen.errors, [], 'no uncaught errors in the page');
});

test('9. the legacy /api/ws bridge delivers voice.left in the old shape', {
  timeout: 60_000,
}, async () => {
  await joinFirstVoiceChannel();
  const wsUrl = BRIDGE_URL.replace(/^http/, 'ws') + '/api/ws';
  const ack = await page.evaluate(({ wsUrl, token, T }) => new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl);
    const w = /** @type {any} */ (window);
    w.__bridge = [];
    const timer = setTimeout(() => reject(new Error('no auth.ok within ' + T + ' ms')), T);
    ws.onopen = () => ws.send(JSON.stringify({ v: 1, type: 'auth', token }));
    ws.onerror = () => reject(new Error('bridge WebSocket failed'));
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      w.__bridge.push(msg);
      if (msg.event === 'auth.ok') { clearTimeout(timer); resolve(msg); }
    };
  }), { wsUrl, token: SESSION_TOKEN, T });
  assert.equal(ack.v, 1);
  assert.equal(ack.type, 'ack');

  await sim('voice-leave', { userId: me });
  const left = await page.waitForFunction((userId) => /** @type {any} */ (window).__bridge.find(
    (m) => m.type === 'event' && m.event === 'voice.left' && m.payload?.userId === userId), me, { timeout: T });
  const msg = await left.jsonValue();
  assert.equal(msg.v, 1);
  assert.equal(msg.payload.channelId, null);
  assert.match(msg.payload.guildId, /^\d{1,20}$/);
  assert.equal(typeof msg.ts, 'number');
  // The SSE side saw the same dropout.
  await page.locator('[data-testid=dropout-dialog]').waitFor({ state: 'visible', timeout: T });
  await page.keyboard.press('Escape');
});

test('10. a role taken away live: the open channel goes, the page moves to the first text channel', { timeout: 60_000 }, async () => {
  const moderators = textChannel('moderators');
  await moderators.click({ timeout: T });
  await page.waitForFunction(() => document.querySelector('.channel.active .channel-name')?.textContent === 'moderators', null, { timeout: T });
  await sim('set-roles', { userId: me, roleIds: [ROLE_MEMBER] });
  await moderators.waitFor({ state: 'detached', timeout: T });
  await page.waitForFunction(() => document.querySelector('.channel.active .channel-name')?.textContent === 'general', null, { timeout: T });
  assert.equal(await page.locator('#channel-title').textContent(), 'general');
  await page.locator('[data-testid=composer]').waitFor({ state: 'visible', timeout: T });
  await page.waitForFunction(() => !document.querySelector('[data-testid=voice-join]'), null, { timeout: T });
  assert.ok(!(await canOf(textChannel('announcements'))).includes('send'));
  // What a plain member sees in a read-only channel.
  await textChannel('announcements').click();
  await page.locator('[data-testid=composer-locked]').waitFor({ state: 'visible', timeout: T });
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo-page-member.png') });
  await textChannel('general').click();
  assert.deepEqual(seen.errors, [], 'no uncaught errors in the page');
});

test('11. a timed-out member may read but not write or react', { timeout: 60_000 }, async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  try {
    const p = await ctx.newPage();
    /** @type {string[]} */ const errors = [];
    p.on('pageerror', (e) => errors.push(String(e)));
    await p.goto(RELAY_URL + '/', { timeout: T });
    const ken = p.locator('[data-testid=signin-user]', { hasText: 'Ken' });
    await ken.waitFor({ timeout: T });
    await sim('timeout', { userId: await ken.getAttribute('data-user-id'), seconds: 600 });
    await ken.click();
    const general = textChannel('general', p);
    await general.waitFor({ timeout: T });
    assert.deepEqual(await canOf(general), ['view', 'history']);
    await p.locator('[data-testid=composer-locked]').waitFor({ state: 'visible', timeout: T });
    assert.ok(await p.locator('[data-testid=composer]').isHidden(), 'no composer while timed out');
    // Chat keeps arriving; messages come without reaction buttons.
    await p.locator('[data-testid=message]').first().waitFor({ timeout: T });
    assert.equal(await p.locator('[data-testid=reaction-tools]').count(), 0, 'no reaction buttons while timed out');
    assert.equal(await p.locator('[data-testid=message]').first().evaluate((el) => [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE)),
      false, 'nothing stray (like "null") printed where the toolbar was left out');
    assert.equal(await p.locator('[data-testid=voice-join]').count(), 0);
    await p.screenshot({ path: path.join(ARTIFACTS, 'demo-page-timed-out.png') });
    assert.deepEqual(errors, [], 'no uncaught errors in the page');
  } finally {
    await ctx.close();
  }
});

// ---- history (CONTRACT.md §9) -------------------------------------------------

/** The simulated guild's users and the quiet channel the history tests use (no demo chatter). */
const OWNER = '245834868326400001';
const GRACE = '256721603788800001';
const LINUS = '218473863053312001';
const LINUS_CHAT = '820675262545920001'; // #game-room: where the ring is flooded
const REPLAY_CAPACITY = Number(process.env.REPLAY_CAPACITY || 4096);
// The demo's own members react with 👍 🎉 🔥 to the newest message they may: these
// tests use other emoji, so their counts are only what the tests did.

/** POSTs to the control API and returns its JSON answer. @param {string} what @param {object} body */
async function simJson(what, body) {
  const res = await fetch(`${SIM}/${what}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(T),
  });
  const json = await res.json();
  assert.ok(res.ok, `sim ${what}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}
/** Every message id the simulated Discord holds in a channel, oldest first: the truth. @param {string} channelId */
const truth = async (channelId) => /** @type {string[]} */ ((await simJson('messages', { channelId })).ids);
/** The message rows on the page, in order. */
const rowIds = () => page.locator('[data-testid=message]').evaluateAll((els) => els.map((e) => e.getAttribute('data-message-id') || ''));
const feedState = (/** @type {string} */ s) => page.waitForFunction(
  (want) => document.querySelector('[data-testid=message-feed]')?.getAttribute('data-state') === want, s, { timeout: T });
/** Scrolls the feed to the top until the channel's start shows (each scroll loads one older page). */
async function scrollToStart() {
  for (let i = 0; i < 20 && await page.locator('[data-testid=history-start]').count() === 0; i++) {
    const n = (await rowIds()).length;
    await page.locator('#feed-scroll').evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
    await page.waitForFunction((before) => document.querySelectorAll('[data-testid=message]').length > before
      || !!document.querySelector('[data-testid=history-start]'), n, { timeout: T });
    await feedState('ready');
  }
  await page.locator('[data-testid=history-start]').waitFor({ timeout: T });
}
const chip = (/** @type {string} */ messageId, /** @type {string} */ emoji) =>
  page.locator(`[data-testid=message][data-message-id="${messageId}"] [data-testid=reaction][data-emoji="${emoji}"]`);
const chipCount = async (/** @type {string} */ messageId, /** @type {string} */ emoji) =>
  (await chip(messageId, emoji).count()) ? Number(await chip(messageId, emoji).locator('.chip-n').textContent()) : 0;
const waitChip = (/** @type {string} */ messageId, /** @type {string} */ emoji, /** @type {number} */ n) => page.waitForFunction(
  ({ messageId, emoji, n }) => {
    const el = document.querySelector(`[data-testid=message][data-message-id="${messageId}"] [data-testid=reaction][data-emoji="${emoji}"] .chip-n`);
    return (el ? Number(el.textContent) : 0) === n;
  }, { messageId, emoji, n }, { timeout: T });
const ANNOUNCEMENTS = '820959510528000001'; // read-only for members; only the test posts there
/** @type {string[]} */ let seeded = [];
// History from before anyone looked: 120 messages, one second apart, ending 5 minutes
// ago — seeded before the page opens the channel (a gateway that has read a channel's
// start knows no older message can appear later, as on Discord).
before(async () => {
  seeded = (await simJson('seed-messages', { userId: OWNER, channelId: ANNOUNCEMENTS, content: uniq('seeded'), count: 120, agoMs: 300_000 })).ids;
});

test('12. a channel opens with its last 50 messages; scrolling up loads older ones; reaction counts stay right', { timeout: 90_000 }, async () => {
  const announcements = ANNOUNCEMENTS;
  assert.equal(await textChannel('announcements').getAttribute('data-channel-id'), announcements);
  assert.equal(seeded.length, 120);
  // Reactions made before the page opens reach it only through history.
  const [oldest, newest] = [seeded[0], seeded[seeded.length - 1]];
  await sim('react', { userId: GRACE, channelId: announcements, messageId: newest, emoji: '🚀' });
  await sim('react', { userId: LINUS, channelId: announcements, messageId: newest, emoji: '🚀' });
  await sim('react', { userId: GRACE, channelId: announcements, messageId: oldest, emoji: '⭐' });
  const all = await truth(announcements);
  assert.ok(all.length >= 121, `the channel holds the seeds: ${all.length}`);

  await textChannel('announcements').click();
  await feedState('ready');
  assert.deepEqual(await rowIds(), all.slice(-50), 'the last 50 messages, oldest first, at once');
  await page.locator('[data-testid=history-more]').waitFor({ timeout: T });
  assert.equal(await chipCount(newest, '🚀'), 2, 'reaction counts come with history');
  // Scrolled to the bottom: the newest message is in view.
  assert.ok(await page.locator(`[data-message-id="${newest}"]`).isVisible());

  // Scroll up: one older page.
  const top = all[all.length - 50];
  await page.locator('#feed-scroll').evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=message]').length >= 100, null, { timeout: T });
  await feedState('ready');
  assert.deepEqual(await rowIds(), all.slice(-100), 'the next 50 older, before the oldest shown');
  // What was on screen stays where it was (the older page goes above it).
  const y = await page.locator(`[data-message-id="${top}"]`).evaluate((el) => el.getBoundingClientRect().top);
  assert.ok(y > 0, `the row that was at the top is still in view, not pushed away (top ${y})`);
  await scrollToStart();
  assert.deepEqual(await rowIds(), all, 'every message once, down to the channel start');
  assert.equal(await chipCount(oldest, '⭐'), 1);

  // Live: a reaction taken back (reactionRemove) and another added, on messages from history.
  await sim('unreact', { userId: LINUS, channelId: announcements, messageId: newest, emoji: '🚀' });
  await waitChip(newest, '🚀', 1);
  await sim('unreact', { userId: GRACE, channelId: announcements, messageId: oldest, emoji: '⭐' });
  await waitChip(oldest, '⭐', 0);
  await sim('react', { userId: LINUS, channelId: announcements, messageId: oldest, emoji: '🦀' });
  await waitChip(oldest, '🦀', 1);
  assert.deepEqual(seen.errors, [], 'no uncaught errors in the page');
});

/**
 * A TCP proxy in front of the edge: the network between a browser and relay, which a
 * test can cut (every connection closed, new ones refused) and restore.
 */
async function networkTo(/** @type {string} */ url) {
  const target = new URL(url);
  /** @type {Set<import('node:net').Socket>} */ const open = new Set();
  let down = false;
  const server = net.createServer((client) => {
    if (down) return client.destroy();
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      open.add(a);
      a.on('error', () => b.destroy());
      a.on('close', () => { open.delete(a); b.destroy(); });
      a.pipe(b);
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', () => r(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    cut() { down = true; for (const s of open) s.destroy(); },
    restore() { down = false; },
    close() { down = true; for (const s of open) s.destroy(); server.close(); },
  };
}

test('13. events lost past the replay ring: stream.reset, the page refetches by itself, every message once', { timeout: 120_000 }, async () => {
  assert.ok(REPLAY_CAPACITY <= 1024, `REPLAY_CAPACITY ${REPLAY_CAPACITY} is small enough to overflow here`);
  const link = await networkTo(RELAY_URL);
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  try {
    const p = await ctx.newPage();
    /** @type {string[]} */ const errors = [];
    p.on('pageerror', (e) => errors.push(String(e)));
    /** @type {import('playwright-core').Request[]} */ const streams = [];
    p.on('request', (r) => { if (pathOf(r.url()) === '/api/stream') streams.push(r); });
    await p.goto(link.url + '/', { timeout: T });
    await p.locator('[data-testid=signin-user]').first().click({ timeout: T });
    await p.waitForFunction(() => document.querySelector('[data-testid=status-badge]')?.textContent === 'Live', null, { timeout: T });
    const ids = () => p.locator('[data-testid=message]').evaluateAll((els) => els.map((e) => e.getAttribute('data-message-id') || ''));
    const ready = () => p.waitForFunction(() => document.querySelector('[data-testid=message-feed]')?.getAttribute('data-state') === 'ready', null, { timeout: T });
    const toStart = async () => {
      for (let i = 0; i < 20 && await p.locator('[data-testid=history-start]').count() === 0; i++) {
        const n = (await ids()).length;
        await p.locator('#feed-scroll').evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
        await p.waitForFunction((before) => document.querySelectorAll('[data-testid=message]').length > before
          || !!document.querySelector('[data-testid=history-start]'), n, { timeout: T });
        await ready();
      }
    };
    await textChannel('announcements', p).click({ timeout: T });
    await ready();
    await toStart();
    assert.deepEqual(await ids(), await truth(ANNOUNCEMENTS), 'the whole channel before the gap');
    // A live message: the page has an event id to resume from.
    const live = (await simJson('post', { userId: OWNER, channelId: ANNOUNCEMENTS, content: uniq('live before the gap') })).ids[0];
    await p.locator(`[data-testid=message][data-message-id="${live}"]`).waitFor({ timeout: T });
    await p.waitForFunction(() => /^\d+-\d+$/.test(sessionStorage.getItem('relay.lastEventId:' + location.origin) || ''), null, { timeout: T });
    const rows = await ids();
    const [edited, deleted, reacted] = [rows[rows.length - 3], rows[rows.length - 2], rows[rows.length - 1]];
    const streamsBefore = streams.length;
    const gapText = uniq('posted while the network was down');

    // The network drops: the stream breaks, EventSource keeps retrying and is refused.
    link.cut();
    await p.waitForFunction(() => document.querySelector('[data-testid=status-badge]')?.getAttribute('data-state') !== 'live', null, { timeout: T });
    // Read only now: the demo's own activity may bring an event between the
    // live message and the cut, and the browser resumes from the last one it got.
    const lastBefore = /** @type {string} */ (await p.evaluate(() => sessionStorage.getItem('relay.lastEventId:' + location.origin)));
    assert.match(lastBefore, /^\d+-\d+$/);
    try {
      // Meanwhile in Discord: 70 messages here, an edit, a delete, a reaction — and
      // enough chatter elsewhere that the page's last event id leaves the replay ring.
      const posted = (await simJson('post', { userId: OWNER, channelId: ANNOUNCEMENTS, content: gapText, count: 70 })).ids;
      assert.equal(posted.length, 70);
      await simJson('edit', { channelId: ANNOUNCEMENTS, messageId: edited, content: 'edited while offline' });
      await simJson('delete', { channelId: ANNOUNCEMENTS, messageId: deleted });
      await sim('react', { userId: GRACE, channelId: ANNOUNCEMENTS, messageId: reacted, emoji: '🦀' });
      await simJson('post', { userId: LINUS, channelId: LINUS_CHAT, content: uniq('flood'), count: REPLAY_CAPACITY + 50 });
      // The shared page (signed in, online) sees the flood's last message, so the edge's
      // ring holds it and has dropped the cut page's id.
      await page.waitForFunction((n) => Number((document.querySelector('[data-testid=last-event-id]')?.textContent || '0-0').split('-')[1]) >= n,
        Number(lastBefore.split('-')[1]) + REPLAY_CAPACITY + 50, { timeout: T });
    } finally {
      link.restore();
    }
    // The browser's own reconnect resumes with Last-Event-ID; the edge answers stream.reset.
    await p.locator('[data-testid=toast]', { hasText: 'Some events were missed' }).first().waitFor({ timeout: 30_000 });
    await p.waitForFunction(() => document.querySelector('[data-testid=status-badge]')?.textContent === 'Live', null, { timeout: T });
    const resumed = await Promise.all(streams.slice(streamsBefore).map(async (r) =>
      (await r.allHeaders())['last-event-id'] || new URL(r.url()).searchParams.get('lastEventId') || ''));
    assert.ok(resumed.includes(lastBefore), `the stream resumed from ${lastBefore}: ${JSON.stringify(resumed)}`);

    // The client refetched the channel by itself: the newest page is there…
    const all = await truth(ANNOUNCEMENTS);
    await p.locator(`[data-testid=message][data-message-id="${all[all.length - 1]}"]`).waitFor({ timeout: T });
    await ready();
    // …and scrolling up shows the rest: each message exactly once, none missing.
    await toStart();
    const shown = await ids();
    assert.equal(new Set(shown).size, shown.length, 'no message twice');
    assert.deepEqual(shown, all, 'exactly the channel, in order');
    assert.ok(!shown.includes(deleted), 'the message deleted in the gap is gone');
    assert.equal(await p.locator(`[data-testid=message][data-message-id="${edited}"] .msg-content`).textContent(), 'edited while offline (edited)');
    const fire = p.locator(`[data-testid=message][data-message-id="${reacted}"] [data-testid=reaction][data-emoji="🦀"] .chip-n`);
    assert.equal(await fire.textContent(), '1', 'the reaction made in the gap is counted once');
    assert.equal(await p.locator('[data-testid=message]', { hasText: gapText }).count(), 70);
    await p.screenshot({ path: path.join(ARTIFACTS, 'demo-page-history.png') });
    assert.deepEqual(errors, [], 'no uncaught errors in the page');
  } finally {
    await ctx.close();
    link.close();
  }
});
