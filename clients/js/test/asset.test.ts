// @vitest-environment node
// esbuild needs Node's own TextEncoder, not jsdom's.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ASSET, buildAsset } from '../scripts/asset.mjs';

describe('server/assets/relay.js', () => {
  it('is exactly a fresh build of this package (run `npm run build:asset` after changing src/)', async () => {
    const fresh = await buildAsset();
    const committed = readFileSync(ASSET, 'utf8');
    expect(committed === fresh, 'server/assets/relay.js differs from a fresh build: run `npm run build:asset` in clients/js').toBe(true);
  });
});
