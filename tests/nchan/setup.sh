#!/usr/bin/env bash
# Installs Debian's nginx and its nchan module for `loadgen --against nchan`.
# Idempotent: does nothing when both are there. Needs root (apt-get).
# The packages' init scripts would start a system nginx on port 80; a temporary
# policy-rc.d keeps them from starting anything (the loadgen runs its own nginx
# as a child process, with its own config, on a loopback port).
set -euo pipefail

have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
nginx_bin() { command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }; }

if [ -n "$(nginx_bin || true)" ] && have libnginx-mod-nchan; then
  echo "nchan setup: nginx and libnginx-mod-nchan already installed"
else
  export DEBIAN_FRONTEND=noninteractive
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    made_policy=1
  fi
  trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
  apt-get update -qq
  # nginx-light is the smallest flavour where the release still has it.
  flavour=nginx
  if apt-cache show nginx-light >/dev/null 2>&1; then flavour=nginx-light; fi
  apt-get install -y -qq --no-install-recommends "$flavour" libnginx-mod-nchan >/dev/null
  echo "nchan setup: installed $flavour and libnginx-mod-nchan"
fi

module=$(dpkg -L libnginx-mod-nchan | grep -E 'ngx_nchan_module\.so$' | head -n1)
echo "nginx: $(nginx_bin) ($("$(nginx_bin)" -v 2>&1))"
echo "nchan module: $module ($(dpkg-query -W -f='${Version}' libnginx-mod-nchan))"
