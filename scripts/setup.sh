#!/usr/bin/env bash
# Sets up everything Sahara needs from a clean clone, and nothing twice:
#   1. npm dependencies          (again only when package-lock.json changes)
#   2. the sidecar's Python venv (again only when sidecar/requirements.txt changes)
#   3. gRPC stubs for TS and Python, generated from proto/ (again only when a .proto changes)
#   4. Debian's chromium         (only when /usr/bin/chromium is missing; the report's browser test)
#   5. the TypeScript build      (tsc, incremental)
# Each step records a hash of its inputs in .setup/; a re-run with nothing changed takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
STAMPS="$ROOT/.setup"
mkdir -p "$STAMPS"

say() { printf '[setup] %s\n' "$*" >&2; }
digest() { cat "$@" | sha256sum | cut -d' ' -f1; }
up_to_date() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
mark_done() { echo "$2" >"$STAMPS/$1"; }

# 1. npm
npm_hash=$(digest package.json package-lock.json)
if ! up_to_date npm "$npm_hash" || [[ ! -d node_modules ]]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  mark_done npm "$npm_hash"
fi

# 2. Python venv for the sidecar (CPU torch; the GPU image installs its own, see Dockerfile.gpu)
PYTHON="${SAHARA_BOOTSTRAP_PYTHON:-python3}"
venv_hash=$(digest sidecar/requirements.txt)
if ! up_to_date venv "$venv_hash" || [[ ! -x sidecar/.venv/bin/python ]]; then
  say "python venv (sidecar/.venv) from sidecar/requirements.txt"
  rm -rf sidecar/.venv
  "$PYTHON" -m venv sidecar/.venv
  # --retries 0: the public index is unreachable here; the configured mirror answers at once.
  sidecar/.venv/bin/pip install --retries 0 --disable-pip-version-check -q -r sidecar/requirements.txt
  mark_done venv "$venv_hash"
fi

# 3. generated stubs (never edited by hand; git-ignored)
proto_hash=$(digest $(find proto -name '*.proto' | sort) sidecar/gen_protos.sh package-lock.json buf.gen.yaml)
if ! up_to_date protos "$proto_hash" || [[ ! -d src/gen || ! -d sidecar/sahara_sidecar/_gen ]]; then
  say "generating gRPC stubs from proto/"
  npm run --silent gen
  bash sidecar/gen_protos.sh
  mark_done protos "$proto_hash"
fi

# 4. Chromium for the report's browser test (test/e2e/report-browser.test.ts drives it with
#    playwright-core, which downloads no browser): Debian's package, installed once.
if [[ ! -x /usr/bin/chromium ]]; then
  say "installing Debian's chromium (/usr/bin/chromium is missing; the HTML report's browser test needs it)"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
      say "error: /usr/bin/chromium is missing and this is not root (no sudo): run 'apt-get install -y chromium' as root"; exit 1
    fi
  fi
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; }; then
    say "error: 'apt-get install chromium' failed: the browser test of the HTML report cannot run without /usr/bin/chromium"; exit 1
  fi
fi

# 5. TypeScript build
say "tsc"
npm run --silent compile
say "ready"
