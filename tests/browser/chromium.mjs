// What the browser tests here share: Debian's chromium, headless, and a page
// whose requests are watched (stream and legacy-bridge requests, WebSockets,
// uncaught errors), so each test can say "exactly one stream, no WebSocket".

import { chromium } from 'playwright-core';

export const pathOf = (/** @type {string} */ url) => new URL(url).pathname;

/** Debian's chromium (or $CHROMIUM), headless, without background traffic. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A new context and page of `browser`, and what the page asked for.
 * @param {import('playwright-core').Browser} browser
 * @param {{ width: number, height: number }} viewport
 */
export async function watchedPage(browser, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const seen = { stream: /** @type {string[]} */ ([]), ws: /** @type {string[]} */ ([]), sockets: 0, errors: /** @type {string[]} */ ([]) };
  page.on('request', (r) => {
    if (pathOf(r.url()) === '/api/stream') seen.stream.push(r.url());
    if (pathOf(r.url()) === '/api/ws') seen.ws.push(r.url());
  });
  page.on('websocket', () => { seen.sockets++; });
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  return { context, page, seen };
}
