// The edge's /client/relay.js (server/assets/relay.js): the client entry of
// this package bundled into one readable, dependency-free ES module.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ASSET = join(root, '..', '..', 'server', 'assets', 'relay.js');

const BANNER = `// relay browser client — generated from clients/js (the @relay/client package);
// do not edit: change clients/js/src and run \`npm run build:asset\` there.
// Dependency-free ES module: import { RelayClient, RelayError } from '/client/relay.js';`;

/** The edge's /client/relay.js: the client entry bundled into one readable ES module. */
export async function buildAsset() {
  const out = await esbuild.build({
    absWorkingDir: root,
    entryPoints: ['src/index.ts'],
    bundle: true,
    format: 'esm',
    target: 'es2020',
    platform: 'browser',
    write: false,
    legalComments: 'none',
    banner: { js: BANNER },
    logLevel: 'silent',
  });
  return out.outputFiles[0].text;
}
