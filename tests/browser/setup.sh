#!/usr/bin/env bash
# Installs what the browser tests need on a fresh Debian machine: Debian's
# chromium and the playwright-core npm package (which drives it; no browser
# download). Idempotent; CI runs it before the test suite.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "browser tests ready: $(/usr/bin/chromium --version 2>/dev/null | head -1), playwright-core $(node -p "require('./node_modules/playwright-core/package.json').version")"
