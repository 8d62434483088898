// Sign in with Discord in a real browser: the demo page's "Sign in with Discord"
// link → the simulated Discord's consent page → pick a user → back on the page,
// signed in, with the stream live. Drives Debian's chromium via playwright-core.
//
// Environment:
//   RELAY_URL  the edge serving the demo page, in demo mode (relay demo), required
//   CHROMIUM   browser binary (default /usr/bin/chromium)
//
// Each test has its own browser context (its own cookies). Every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium } from './chromium.mjs';

const RELAY_URL = (process.env.RELAY_URL || '').replace(/\/$/, '');
if (!RELAY_URL) throw new Error('RELAY_URL must be set (see the header of this file)');
const T = 15_000;

/** @type {import('playwright-core').Browser} */ let browser;

before(async () => {
  browser = await launchChromium();
});
after(async () => { await browser?.close(); });

async function freshPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  const page = await context.newPage();
  const errors = /** @type {string[]} */ ([]);
  page.on('pageerror', (e) => errors.push(String(e)));
  const streams = /** @type {string[]} */ ([]);
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/api/stream') streams.push(r.url()); });
  return { context, page, errors, streams };
}

/** Opens the page, clicks "Sign in with Discord", waits for the simulated consent page. */
async function toConsentPage(/** @type {import('playwright-core').Page} */ page) {
  await page.goto(RELAY_URL + '/', { timeout: T });
  const link = page.locator('[data-testid=signin-discord]');
  await link.waitFor({ timeout: T });
  assert.equal(await link.textContent(), 'Sign in with Discord');
  await Promise.all([page.waitForURL(/\/oauth2\/authorize\?/, { timeout: T }), link.click()]);
  const url = new URL(page.url());
  assert.notEqual(url.origin, new URL(RELAY_URL).origin, 'the consent page is Discord\'s, not the edge\'s');
  for (const k of ['state', 'code_challenge']) assert.ok(url.searchParams.get(k), `${k} in the authorize URL`);
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
}

test('1. Sign in with Discord: consent page, pick a user, land back signed in and live', { timeout: 60_000 }, async () => {
  const { context, page, errors, streams } = await freshPage();
  await toConsentPage(page);
  const user = page.locator('[data-testid=sim-authorize-user]').first();
  const userId = /** @type {string} */ (await user.getAttribute('data-user-id'));
  const name = ((await user.textContent()) || '').replace(/^Continue as /, '');
  assert.match(userId, /^\d{1,20}$/);
  await Promise.all([page.waitForURL(RELAY_URL + '/', { timeout: T }), user.click()]);
  // The page asked the edge who signed in and shows that user.
  await page.locator('#me-name').waitFor({ state: 'visible', timeout: T });
  assert.equal(await page.locator('#me-name').textContent(), name);
  await page.waitForFunction(() => document.querySelector('[data-testid=status-badge]')?.textContent === 'Live', null, { timeout: T });
  assert.equal(streams.length, 1, `one stream: ${streams.join(', ')}`);
  assert.ok(!streams[0].includes('access_token='), 'the stream rides on the cookie, no token in the URL');
  // The session cookie is HttpOnly: page script cannot read it; the pending cookie is gone.
  assert.ok(!(await page.evaluate(() => document.cookie)).includes('relay_session'));
  const cookies = await context.cookies(RELAY_URL);
  const session = cookies.find((c) => c.name === 'relay_session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Lax' && session.path === '/', JSON.stringify(session));
  assert.ok(!cookies.some((c) => c.name === 'relay_oauth' && c.value), 'the pending cookie is cleared');
  // Who the edge thinks we are.
  const me = await page.evaluate(async () => (await fetch('/auth/session')).json());
  assert.equal(me.user.id, userId);
  // Sign out clears the cookie: the reload shows the sign-in screen again.
  await page.locator('#signout').click();
  await page.locator('[data-testid=signin-discord]').waitFor({ state: 'visible', timeout: T });
  assert.ok(!(await context.cookies(RELAY_URL)).some((c) => c.name === 'relay_session' && c.value));
  assert.deepEqual(errors, []);
  await context.close();
});

test('2. Cancel at Discord returns to the page with a clear message and no session', { timeout: 60_000 }, async () => {
  const { context, page, errors } = await freshPage();
  await toConsentPage(page);
  await Promise.all([
    page.waitForURL((u) => u.origin === new URL(RELAY_URL).origin, { timeout: T }),
    page.locator('[data-testid=sim-authorize-cancel]').click(),
  ]);
  const error = page.locator('#signin-error');
  await error.waitFor({ state: 'visible', timeout: T });
  assert.match((await error.textContent()) || '', /cancelled/);
  assert.ok(!(await context.cookies(RELAY_URL)).some((c) => c.name === 'relay_session'));
  assert.equal(new URL(page.url()).search, '', 'the page tidies ?signin= away');
  assert.deepEqual(errors, []);
  await context.close();
});
