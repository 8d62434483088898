// `npm run demo`: relay demo (a simulated Discord, relay's gateway and edge)
// and this app against it, with one SESSION_SECRET for both, so the app's
// server functions mint sessions the edge accepts. Ctrl-C stops both.
//   RELAY_BIN   a built relay binary (default: `cargo run --release --bin relay`)
//   RELAY_PORT  the edge's port (3000); PORT the app's (3001)
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(here, '..', '..');
const relayPort = process.env.RELAY_PORT ?? '3000';
const appPort = process.env.PORT ?? '3001';
const env = {
  ...process.env,
  SESSION_SECRET: process.env.SESSION_SECRET || randomBytes(32).toString('hex'),
  RELAY_URL: `http://127.0.0.1:${relayPort}`,
  PORT: appPort,
};

console.log('== building the app (and @relay/client)');
execFileSync('npm', ['run', 'build'], { cwd: here, stdio: 'inherit' });

const children = [];
const stop = (code) => { for (const c of children) c.kill('SIGTERM'); process.exit(code); };
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

console.log('== starting relay demo (the first run compiles relay: a few minutes)');
const [cmd, args] = process.env.RELAY_BIN
  ? [process.env.RELAY_BIN, ['demo']]
  : ['cargo', ['run', '--release', '--quiet', '--bin', 'relay', '--', 'demo']];
const relay = spawn(cmd, args, { cwd: repo, env: { ...env, BIND: `127.0.0.1:${relayPort}` }, stdio: ['ignore', 'pipe', 'inherit'] });
children.push(relay);
relay.on('exit', (code) => { console.error(`relay demo exited (${code})`); stop(1); });
let started = false;
relay.stdout.setEncoding('utf8');
relay.stdout.on('data', (text) => {
  if (started || !text.includes('relay demo is running')) return;
  started = true;
  // relay's own demo page stays on its port; the token it prints is not needed here.
  console.log(`relay demo is running on http://127.0.0.1:${relayPort}/`);
  const app = spawn(process.execPath, ['server.mjs'], { cwd: here, env, stdio: 'inherit' });
  children.push(app);
  app.on('exit', (code) => { console.error(`the app exited (${code})`); stop(1); });
  console.log(`\n  open http://127.0.0.1:${appPort}/ — sign in, then the game room\n`);
});
