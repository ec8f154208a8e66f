#!/usr/bin/env bash
# Installs what the benchmarks compare Edgeward with, on a Debian machine, as root, without questions:
# nginx from Debian's packages (run by the benchmarks as their own child process, never as the system
# service) and the peers pinned in bench/peers (Portkey's gateway, cedar-wasm). Safe to run again.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fail() { echo "bench/setup.sh: $*" >&2; exit 1; }

# nginx lives in /usr/sbin, which a non-login root shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

if ! command -v nginx >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || fail "nginx is not installed and apt-get is missing: install nginx by hand"
  [ "$(id -u)" -eq 0 ] || fail "nginx is not installed: run this script as root (or install the Debian package nginx)"
  # Keep the package's postinst from starting the system service (it would take port 80): policy-rc.d
  # answers 101 ("action forbidden") to invoke-rc.d for the duration of the install.
  policy="/usr/sbin/policy-rc.d"
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=1
  fi
  cleanup() { if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; fi; }
  trap cleanup EXIT
  echo "bench/setup.sh: installing nginx (Debian package)"
  apt-get update -qq || fail "apt-get update failed"
  # nginx-light is Debian's small build; where it is not offered, the plain nginx package has the same modules we use.
  pkg=nginx
  if apt-cache show nginx-light >/dev/null 2>&1; then pkg=nginx-light; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null \
    || fail "apt-get install $pkg failed"
  cleanup
  trap - EXIT
  command -v nginx >/dev/null 2>&1 || fail "nginx is still not on PATH after installing $pkg"
fi

# Whatever the package did, leave no system nginx running: the benchmarks start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx || fail "could not stop the system nginx service"
fi
if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
  kill -QUIT "$(cat /run/nginx.pid)" || fail "could not stop the system nginx (pid $(cat /run/nginx.pid))"
fi
nginx -V 2>&1 | grep -q -- '--with-http_ssl_module' || fail "this nginx lacks the SSL module; the mTLS target needs it"

if [ ! -d "$here/peers/node_modules" ]; then
  echo "bench/setup.sh: installing the peers pinned in bench/peers"
  command -v npm >/dev/null 2>&1 || fail "npm not found: install Node.js and npm first"
  (cd "$here/peers" && npm ci --no-audit --no-fund) || fail "npm ci in bench/peers failed"
fi

echo "bench/setup.sh: ready ($(nginx -v 2>&1), peers in bench/peers/node_modules)"
