// The TanStack Start example (examples/tanstack-start) in Debian's chromium via
// playwright-core, against relay demo: the app's own sign-in, the relay session
// its server function mints, history and live chat, sending, the voice members
// list and the voice dropout modal with Dismiss and Rejoin — and exactly one /api/stream, no WebSocket.
//
// Environment (all required; tests/tests/browser-example-app.rs sets them):
//   APP_URL          the example's production server (node server.mjs), proxying /api/* to the demo
//   SIM_CONTROL_URL  control API of relay demo's simulated Discord:
//                      POST /post        {"userId","channelId","content"}  a member posts in Discord
//                      POST /voice-join  {"userId","channelId"}            a member joins a voice channel
//                      POST /voice-leave {"userId"}                        a member drops out of voice
//   CHROMIUM         browser binary (default /usr/bin/chromium)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, watchedPage } from './chromium.mjs';

const APP_URL = (process.env.APP_URL || '').replace(/\/$/, '');
const SIM = (process.env.SIM_CONTROL_URL || '').replace(/\/$/, '');
for (const [name, value] of Object.entries({ APP_URL, SIM_CONTROL_URL: SIM })) {
  if (!value) throw new Error(`${name} must be set (see the header of this file)`);
}
const T = 15_000; // every wait is bounded by this
// The demo guild (runtime/src/sim_discord/guild.rs) and the example's room (examples/tanstack-start/src/users.ts).
// Hedy, the guild's owner: the demo's own activity never moves her, so only this test does.
const HEDY = '245834868326400001';
const LINUS = '218473863053312001';
const GAME_ROOM = '820675262545920001';
const LOBBY = '820675388375040001';

/** @type {import('playwright-core').Browser} */ let browser;
/** @type {import('playwright-core').Page} */ let page;
/** @type {{ stream: string[], ws: string[], sockets: number, errors: string[] }} */ let seen;
const uniq = (/** @type {string} */ p) => `${p} ${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/** POSTs JSON to the simulated Discord's control API. @param {string} what @param {object} body */
async function sim(what, body) {
  const res = await fetch(`${SIM}/${what}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(T),
  });
  assert.ok(res.ok, `sim ${what}: HTTP ${res.status}`);
  const answer = await res.json();
  assert.equal(answer.ok, true, `sim ${what} ${JSON.stringify(body)}: ${JSON.stringify(answer)}`);
  return answer;
}

const message = (/** @type {string} */ text) => page.locator('[data-testid=messages] li', { hasText: text });
const voiceMember = (/** @type {string} */ id) => page.locator(`[data-testid=voice-members] li[data-user-id="${id}"]`);
const modal = () => page.locator('[data-testid=voice-dropout]');

let history = '';

before(async () => {
  // Before the page opens: a message only history can show, and Hedy in voice.
  history = uniq('said before you came');
  await sim('post', { userId: LINUS, channelId: GAME_ROOM, content: history });
  const join = await fetch(`${SIM}/voice-join`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ userId: HEDY, channelId: LOBBY }), signal: AbortSignal.timeout(T),
  });
  assert.ok(join.ok, `sim voice-join: HTTP ${join.status}`); // ok:false when she is there already
  browser = await launchChromium();
  ({ page, seen } = await watchedPage(browser, { width: 1280, height: 800 }));
});

after(async () => { await browser?.close(); });

test('1. the app signs in, mints the relay session server-side, and the room goes live', { timeout: 60_000 }, async () => {
  await page.goto(APP_URL + '/', { timeout: T });
  await page.locator('button[data-user=hedy]').click({ timeout: T });
  await page.waitForURL(APP_URL + '/room', { timeout: T });
  await page.waitForFunction(() => document.querySelector('[data-testid=status]')?.textContent === 'live', null, { timeout: T });
  // The session is an HttpOnly cookie for /api: page script cannot read it.
  assert.equal(await page.evaluate(() => document.cookie.includes('relay_session')), false);
  const cookies = await page.context().cookies(APP_URL + '/api/stream');
  const relay = cookies.find((c) => c.name === 'relay_session');
  assert.ok(relay, 'the app set relay_session');
  assert.equal(relay.httpOnly, true);
  assert.equal(relay.path, '/api');
  const claims = JSON.parse(Buffer.from(relay.value.split('.')[1], 'base64url').toString());
  assert.equal(claims.sub, HEDY, 'the session is for the signed-in user\'s Discord id');
  assert.deepEqual(claims.roles, ['chat:write', 'voice:moderate']);
});

test('2. history on open: a message posted before the page opened is listed', { timeout: 60_000 }, async () => {
  await message(history).waitFor({ timeout: T });
  assert.equal(await message(history).locator('.author').textContent(), 'Linus');
});

test('3. live: a message posted in Discord now appears', { timeout: 60_000 }, async () => {
  const live = uniq('live from Discord');
  const { id } = await sim('post', { userId: LINUS, channelId: GAME_ROOM, content: live });
  await message(live).waitFor({ timeout: T });
  assert.equal(await message(live).getAttribute('data-message-id'), id);
});

test('4. sending: the composer posts through relay and the message comes back on the stream', { timeout: 60_000 }, async () => {
  const text = uniq('gg from the web app');
  await page.getByLabel('Message').fill(text);
  await page.getByRole('button', { name: 'Send' }).click();
  await message(text).waitFor({ timeout: T });
  // ACCESS=discord: posted under the sender's name, marked as from the web app.
  assert.equal(await message(text).locator('.author').textContent(), 'Hedy');
  assert.equal(await message(text).locator('.via').count(), 1);
  assert.equal(await page.getByLabel('Message').inputValue(), '');
  assert.equal(await page.locator('.chat .error').count(), 0);
});

test('5. voice members: Hedy is listed in Lobby; a dropout shows the modal; Dismiss closes it', { timeout: 60_000 }, async () => {
  await voiceMember(HEDY).waitFor({ timeout: T });
  assert.equal(await modal().count(), 0, 'no modal while she is in voice');
  await sim('voice-leave', { userId: HEDY });
  await voiceMember(HEDY).waitFor({ state: 'detached', timeout: T });
  await modal().waitFor({ timeout: T });
  assert.match(await modal().locator('h2').textContent() || '', /You dropped out of Lobby/);
  await modal().getByRole('button', { name: 'Dismiss' }).click();
  await modal().waitFor({ state: 'detached', timeout: T });
  // Back in voice: listed again, no modal.
  await sim('voice-join', { userId: HEDY, channelId: LOBBY });
  await voiceMember(HEDY).waitFor({ timeout: T });
  assert.equal(await modal().count(), 0);
});

test('6. another dropout: Rejoin moves the user back into the channel through relay, and the modal closes', { timeout: 60_000 }, async () => {
  await sim('voice-leave', { userId: HEDY });
  await modal().waitFor({ timeout: T });
  await modal().getByRole('button', { name: 'Rejoin' }).click();
  // POST /api/voice/move-member (an owner may move members); relay demo's Discord lets a move pull a member back in.
  await voiceMember(HEDY).waitFor({ timeout: T });
  await modal().waitFor({ state: 'detached', timeout: T });
});

test('7. one /api/stream for the whole visit, no /api/ws, no WebSocket, no page error', async () => {
  assert.equal(seen.stream.length, 1, `stream requests: ${seen.stream.join(', ')}`);
  assert.equal(seen.ws.length, 0, 'no /api/ws request');
  assert.equal(seen.sockets, 0, 'no WebSocket opened');
  assert.deepEqual(seen.errors, []);
});
