#!/usr/bin/env bash
# The package as a user gets it: `npm run build`, `npm pack`, then `npm install --omit=dev <tarball>` in an empty
# folder, and the installed `edgeward` checked from there — the tarball's contents, the install's size and what it
# left out, `--version`, `npx edgeward` without npm warnings, `policy check`, and an mTLS request through
# `edgeward serve` answered by the embedded runner it starts on the tiny model (and a caller no rule allows refused).
# CI runs it after `npm test` (.ci/run); any failure exits non-zero.
#
#   packaging/install-smoke.sh [--no-build] [--oldest-node]
#
# --no-build packs the dist/ that is there; --oldest-node runs the installed package's checks a second time on the
# oldest Node release package.json's engines accepts (the npm registry's node-linux-<arch> package).
# EDGEWARD_SMOKE_KEEP=1 keeps the work folder for a look afterwards.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
build=1
oldest=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --oldest-node) oldest=1 ;;
    *) echo "usage: $0 [--no-build] [--oldest-node]" >&2; exit 2 ;;
  esac
  shift
done

work="$(mktemp -d "${TMPDIR:-/tmp}/edgeward-install-smoke.XXXXXX")"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${EDGEWARD_SMOKE_KEEP:-}" ]; then echo "install-smoke: work folder kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
step() { printf '[install-smoke %4ss] %s\n' "$SECONDS" "$*" >&2; }
fail() { printf 'install-smoke: FAILED: %s\n' "$*" >&2; exit 1; }

# npm and edgeward run on the Node the checkout installs (the `node` dev dependency) — that binary alone, so nothing
# else of the checkout's node_modules is within reach of the install.
node_bin="$(readlink -f "$repo/node_modules/.bin/node")"
[ -x "$node_bin" ] || fail "no Node in $repo/node_modules/.bin (npm ci first)"
mkdir "$work/node-main" && ln -s "$node_bin" "$work/node-main/node"
base_path="$PATH"
export PATH="$work/node-main:$base_path"
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
arch="$(node -p process.arch)"
version="$(node -p 'require(process.argv[1]).version' "$repo/package.json")"

if [ "$build" = 1 ]; then
  step "npm run build"
  (cd "$repo" && npm run --silent build)
fi

step "npm pack"
tarball="$work/$(cd "$repo" && npm pack --silent --pack-destination "$work" | tail -n 1)"
[ -f "$tarball" ] || fail "npm pack wrote no tarball"
tar -tzf "$tarball" | sed 's|^package/||' | sort >"$work/packed.txt"
for f in bin/edgeward.js dist/cli/run.js dist/cli/run.js.map dist/build-info.json LICENSE README.md docs/install.md \
  examples/policy.yaml dist/gateway/ext-authz/proto/envoy/service/auth/v3/external_auth.proto \
  dist/vendor/node-llama-cpp/package.json dist/vendor/node-llama-cpp/LICENSE \
  dist/vendor/gpt-tokenizer/cjs/bpeRanks/cl100k_base.js dist/vendor/gpt-tokenizer/LICENSE; do
  grep -qx "$f" "$work/packed.txt" || fail "the tarball lacks $f"
done
if grep -E '^(src|test|bench|packaging|\.ci|dist/image)/|\.ts$' "$work/packed.txt" | grep -v '\.d\.ts$' >"$work/unwanted.txt"; then
  fail "the tarball holds files a user does not need: $(head -n 5 "$work/unwanted.txt" | tr '\n' ' ')"
fi

step "npm install --omit=dev $(basename "$tarball") (an empty folder)"
app="$work/app"
mkdir "$app" && cd "$app"
printf '{ "name": "smoke", "private": true }\n' >package.json
npm install --omit=dev --no-audit --no-fund "$tarball" 2>"$work/npm-install.err" >/dev/null || { cat "$work/npm-install.err" >&2; fail "npm install"; }
if grep -q EBADENGINE "$work/npm-install.err"; then cat "$work/npm-install.err" >&2; fail "npm install warned EBADENGINE on Node $(node -v)"; fi

size_mb="$(du -sm node_modules | cut -f1)"
step "node_modules: ${size_mb} MB; llama.cpp prebuilts: $(ls node_modules/@node-llama-cpp | tr '\n' ' ')"
if [ "$(uname -s)-$arch" = "Linux-x64" ] && [ "$size_mb" -gt 150 ]; then fail "the install is ${size_mb} MB, over the 150 MB budget"; fi
for unwanted in node typescript node-llama-cpp gpt-tokenizer @node-llama-cpp/linux-x64-cuda @node-llama-cpp/linux-x64-cuda-ext @node-llama-cpp/linux-x64-vulkan; do
  [ ! -e "node_modules/$unwanted" ] || fail "the install pulled $unwanted"
done
case "$arch" in x64 | arm64) [ -d "node_modules/@node-llama-cpp/linux-$arch" ] || fail "no CPU prebuilt @node-llama-cpp/linux-$arch" ;; esac

# The installed package's checks, on whichever Node is first on PATH; $1 names the run (and its folder).
check_installed() {
  local run="$work/$1" edgeward="$app/node_modules/.bin/edgeward"
  mkdir -p "$run" && cd "$run"
  step "$1: Node $(node -v)"

  local line expected_commit
  line="$("$edgeward" --version)"
  expected_commit="$(git -C "$repo" rev-parse --verify HEAD 2>/dev/null || true)"
  local re="^edgeward ${version//./\\.} \\(commit ([0-9a-f]{40})(, modified)?\\)\$"
  [[ "$line" =~ $re ]] || fail "--version printed: $line"
  [ -z "$expected_commit" ] || [ "${BASH_REMATCH[1]}" = "$expected_commit" ] || fail "--version names ${BASH_REMATCH[1]}, the checkout is at $expected_commit"
  step "$line"

  (cd "$app" && npx edgeward --version >/dev/null 2>"$run/npx.err") || { cat "$run/npx.err" >&2; fail "npx edgeward --version"; }
  [ ! -s "$run/npx.err" ] || { cat "$run/npx.err" >&2; fail "npx edgeward printed warnings"; }

  "$edgeward" policy check "$repo/examples/policy.yaml" >/dev/null || fail "policy check $repo/examples/policy.yaml"
  (cd "$app" && node --input-type=module -e 'const { main } = await import("edgeward"); if (typeof main !== "function") process.exit(1);') \
    || fail "import(\"edgeward\") has no main"

  "$edgeward" ca init --dir ca --trust-domain example.org >/dev/null
  "$edgeward" ca issue --dir ca --spiffe-id spiffe://example.org/ns/edge/sa/gateway --out gateway --dns localhost --ip 127.0.0.1 >/dev/null
  "$edgeward" ca issue --dir ca --spiffe-id spiffe://example.org/ns/kiosk/sa/assistant --out assistant >/dev/null
  "$edgeward" ca issue --dir ca --spiffe-id spiffe://example.org/ns/kiosk/sa/intruder --out intruder >/dev/null
  "$edgeward" model tiny --out tiny.gguf >/dev/null

  # The runner is the gateway's own: serve starts it from the installed package (dist/cli/run.js) and supervises it.
  cat >edgeward.yaml <<EOF
listen: 127.0.0.1:0
admin: 127.0.0.1:0
tls: {cert: gateway.pem, key: gateway.key}
trustBundles: {example.org: ca/ca.pem}
policy: $app/node_modules/edgeward/examples/policy.yaml
runners:
  - {name: embedded, url: "unix:run/runner.sock", models: [tiny], timeout: 120s, embedded: {model: tiny.gguf, threads: 1}}
decisionLog: data/decisions.log
EOF
  start gateway '^edgeward gateway listening on https://' "$edgeward" serve --config edgeward.yaml
  local port
  port="$(sed -nE 's|^edgeward gateway listening on https://[^ ]*:([0-9]+) .*|\1|p' gateway.out | head -n 1)"
  [ -n "$port" ] || fail "no port in: $(cat gateway.out)"
  local admin
  admin="$(sed -nE 's|.*\(admin http://[^ ]*:([0-9]+)\).*|\1|p' gateway.out | head -n 1)"

  local body='{"model":"tiny","messages":[{"role":"user","content":"hello there"}],"max_tokens":8}' answer status
  answer="$(curl -sS --fail-with-body --max-time 120 --cacert ca/ca.pem --cert assistant.pem --key assistant.key \
    -H 'content-type: application/json' -d "$body" "https://localhost:$port/v1/chat/completions")" || fail "the allowed request: $answer"
  node -e 'const a = JSON.parse(process.argv[1]); if (a.object !== "chat.completion" || !(a.usage?.completion_tokens > 0) || typeof a.choices?.[0]?.message?.content !== "string") throw new Error("not a completion: " + process.argv[1]);' "$answer" \
    || fail "the allowed request got: $answer"
  status="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 60 --cacert ca/ca.pem --cert intruder.pem --key intruder.key \
    -H 'content-type: application/json' -d "$body" "https://localhost:$port/v1/chat/completions")"
  [ "$status" = 403 ] || fail "a caller no rule allows got HTTP $status, not 403"
  # No client certificate: refused in the handshake (000) or with 401, never answered.
  status="$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 --cacert ca/ca.pem "https://localhost:$port/v1/models" || true)"
  [ "$status" = 401 ] || [ "$status" = 000 ] || fail "a request without a client certificate got HTTP $status"
  "$edgeward" log verify data/decisions.log >/dev/null || fail "log verify data/decisions.log"
  grep -q '"runners":{"embedded":{"up":true' <(curl -sS --max-time 10 "http://127.0.0.1:$admin/readyz") || fail "/readyz does not show the embedded runner up"
  step "$1: an mTLS completion through edgeward serve and the runner it started; 403 for the intruder, none without a certificate; decision log verified"

  stop_all
}

# start NAME PATTERN COMMAND…: runs COMMAND in the background (output in NAME.out / NAME.err) and waits until a line
# of its stdout matches PATTERN.
start() {
  local name="$1" pattern="$2"
  shift 2
  : >"$name.out"
  "$@" >>"$name.out" 2>"$name.err" &
  local pid=$! deadline=$((SECONDS + 120))
  pids+=("$pid")
  until grep -Eq "$pattern" "$name.out"; do
    kill -0 "$pid" 2>/dev/null || { cat "$name.err" >&2; fail "$name exited before it was ready"; }
    [ "$SECONDS" -lt "$deadline" ] || { cat "$name.err" >&2; fail "$name was not ready within 120 s"; }
    sleep 0.2
  done
}

stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

check_installed "node-$(node -v)"

if [ "$oldest" = 1 ]; then
  # ">=22.13" → 22.13.0
  also_node="$(node -p 'const [a, b = 0, c = 0] = /^>=\s*([\d.]+)$/.exec(require(process.argv[1]).engines.node)[1].split("."); [a, b, c].join(".")' "$repo/package.json")"
  step "node-linux-$arch@$also_node from the npm registry"
  mkdir "$work/node-also" && cd "$work/node-also"
  packed="$(npm pack --silent "node-linux-$arch@$also_node" | tail -n 1)"
  tar -xzf "$packed" package/bin/node
  export PATH="$work/node-also/package/bin:$base_path"
  [ "$(node -v)" = "v$also_node" ] || fail "node-linux-$arch@$also_node runs as $(node -v)"
  check_installed "node-v$also_node"
fi

step "passed"
