// Builds the package (tsc → dist/: ES modules + .d.ts), prints the bundle sizes
// (minified and gzip) of the client and of the React hooks, and with --asset
// writes the edge's /client/relay.js (server/assets/relay.js) from the client
// entry; --check-asset only compares a fresh build with the committed file.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';
import { ASSET, buildAsset } from './asset.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
async function minified(entry, external = []) {
  const out = await esbuild.build({
    absWorkingDir: root, entryPoints: [entry], bundle: true, format: 'esm', target: 'es2020',
    platform: 'browser', minify: true, write: false, external, logLevel: 'silent',
  });
  return Buffer.from(out.outputFiles[0].contents);
}

const kb = (n) => (n / 1024).toFixed(1) + ' KiB';
const line = (name, buf) => `  ${name.padEnd(34)} ${kb(buf.length).padStart(9)} min  ${kb(gzipSync(buf, { level: 9 }).length).padStart(9)} gzip`;

async function sizes() {
  const client = await minified('src/index.ts');
  const both = await minified('src/react.ts', ['react']);
  // The hooks alone: the React entry with the client's modules left out.
  const hooks = await minified('src/react.ts', ['react', './client.js', './dropout.js', './feed.js']);
  console.log('bundle sizes (esbuild --minify, gzip -9):');
  console.log(line('client (@relay/client)', client));
  console.log(line('hooks alone (@relay/client/react)', hooks));
  console.log(line('hooks + client', both));
}

const args = process.argv.slice(2);
if (args.includes('--check-asset')) {
  const fresh = await buildAsset();
  if (readFileSync(ASSET, 'utf8') !== fresh) {
    console.error('server/assets/relay.js differs from a fresh build of clients/js: run `npm run build:asset` in clients/js');
    process.exit(1);
  }
  console.log('server/assets/relay.js matches a fresh build');
} else {
  rmSync(join(root, 'dist'), { recursive: true, force: true });
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
  await sizes();
  if (args.includes('--asset')) {
    writeFileSync(ASSET, await buildAsset());
    console.log('wrote server/assets/relay.js');
  }
}
