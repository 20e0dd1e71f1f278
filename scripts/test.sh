#!/usr/bin/env bash
# Sets everything up (idempotent, see setup.sh), then runs every test:
# the sidecar's Python tests (pytest) and the CLI's tests (vitest, including the
# end-to-end runs that start real sidecars over real gRPC).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== sidecar: pytest ==" >&2
(cd sidecar && .venv/bin/python -m pytest -q tests)
echo "== cli: vitest ==" >&2
npx vitest run
