// The app's production server: one origin for the browser.
//   /api/*       → relay's edge (RELAY_URL), streamed both ways, unbuffered
//                  (/api/stream is Server-Sent Events), cookies passed through
//   static files → dist/client (the built assets)
//   the rest     → the TanStack Start handler (pages, server functions)
// Run `npm run build` first. Settings: PORT (3001), HOST (127.0.0.1),
// RELAY_URL (http://127.0.0.1:3000), SESSION_SECRET (relay's, for the server
// functions that mint sessions), APP_SECRET (the app's own cookie key).
import { createReadStream, existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));
const entry = join(root, 'dist', 'server', 'server.js');
if (!existsSync(entry)) {
  console.error('dist/server/server.js is missing: run `npm run build` first');
  process.exit(1);
}
if (!process.env.SESSION_SECRET) {
  console.error('SESSION_SECRET must be set (the same as relay\'s): the app mints relay sessions with it');
  process.exit(1);
}
const app = (await import(entry)).default;
const PORT = Number(process.env.PORT ?? 3001);
const HOST = process.env.HOST ?? '127.0.0.1';
const RELAY = new URL(process.env.RELAY_URL ?? 'http://127.0.0.1:3000');
const STATIC = join(root, 'dist', 'client');

const TYPES = {
  '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8',
  '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon',
  '.woff2': 'font/woff2', '.txt': 'text/plain; charset=utf-8', '.map': 'application/json',
};
// Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);
const forwardable = (headers) => Object.fromEntries(Object.entries(headers).filter(([k]) => !HOP.has(k.toLowerCase())));

/** /api/* → the edge. Both bodies are piped, so the event stream flows as relay writes it. */
function proxy(req, res) {
  const headers = forwardable(req.headers);
  headers.host = RELAY.host;
  headers['x-forwarded-for'] = req.socket.remoteAddress ?? '';
  headers['x-forwarded-host'] = req.headers.host ?? '';
  const upstream = http.request({
    protocol: RELAY.protocol, hostname: RELAY.hostname, port: RELAY.port, method: req.method, path: req.url, headers,
  }, (up) => {
    res.writeHead(up.statusCode ?? 502, forwardable(up.headers));
    res.flushHeaders();
    up.pipe(res);
    up.on('error', () => res.destroy());
  });
  upstream.on('error', (e) => {
    if (res.headersSent) { res.destroy(); return; }
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'gateway_error', message: `relay is not reachable at ${RELAY.origin}: ${e.code ?? e.message}` } }));
  });
  // A browser that goes away ends its stream at the edge too.
  res.on('close', () => upstream.destroy());
  req.pipe(upstream);
}

/** A file under dist/client, if the path names one. */
async function staticFile(pathname) {
  let rel;
  try { rel = normalize(decodeURIComponent(pathname)); } catch { return null; }
  const file = join(STATIC, rel);
  if (!file.startsWith(STATIC + sep)) return null;
  try {
    const s = await stat(file);
    return s.isFile() ? { file, size: s.size } : null;
  } catch {
    return null;
  }
}

/** Everything else → TanStack Start's fetch handler. */
async function start(req, res) {
  const url = new URL(req.url, `http://${req.headers.host ?? `${HOST}:${PORT}`}`);
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (Array.isArray(v)) v.forEach((x) => headers.append(k, x)); else if (v !== undefined) headers.set(k, v);
  }
  const controller = new AbortController();
  res.on('close', () => controller.abort());
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  const request = new Request(url, {
    method: req.method, headers, signal: controller.signal,
    ...(hasBody ? { body: Readable.toWeb(req), duplex: 'half' } : {}),
  });
  const response = await app.fetch(request);
  const out = {};
  response.headers.forEach((v, k) => { if (k !== 'set-cookie') out[k] = v; });
  const cookies = response.headers.getSetCookie();
  if (cookies.length) out['set-cookie'] = cookies;
  res.writeHead(response.status, out);
  if (!response.body || req.method === 'HEAD') { res.end(); return; }
  Readable.fromWeb(response.body).on('error', () => res.destroy()).pipe(res);
}

const server = http.createServer(async (req, res) => {
  try {
    const { pathname } = new URL(req.url ?? '/', 'http://x');
    if (pathname === '/api' || pathname.startsWith('/api/')) return proxy(req, res);
    if ((req.method === 'GET' || req.method === 'HEAD') && pathname !== '/') {
      const hit = await staticFile(pathname);
      if (hit) {
        res.writeHead(200, {
          'content-type': TYPES[extname(hit.file)] ?? 'application/octet-stream',
          'content-length': hit.size,
          'cache-control': pathname.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
        });
        if (req.method === 'HEAD') { res.end(); return; }
        createReadStream(hit.file).pipe(res);
        return;
      }
    }
    await start(req, res);
  } catch (e) {
    console.error('request failed:', e);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end('internal error');
  }
});
server.listen(PORT, HOST, () => {
  console.log(`example app on http://${HOST}:${server.address().port}/ (relay at ${RELAY.origin})`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); server.closeAllConnections(); process.exit(0); });
