import { defineConfig } from 'vite';
import { tanstackStart } from '@tanstack/react-start/plugin/vite';
import viteReact from '@vitejs/plugin-react';

// Where relay's edge listens; the app's server proxies /api/* there (same origin).
const RELAY_URL = process.env.RELAY_URL ?? 'http://127.0.0.1:3000';

export default defineConfig({
  server: {
    port: Number(process.env.PORT ?? 5173),
    // `vite dev` proxies like server.mjs does in production.
    proxy: { '/api': { target: RELAY_URL, changeOrigin: false } },
  },
  resolve: {
    // @relay/client is linked from ../../clients/js, which has its own React (a
    // dev dependency for its tests): the app must use one React.
    dedupe: ['react', 'react-dom'],
  },
  plugins: [tanstackStart(), viteReact()],
});
