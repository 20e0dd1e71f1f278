#!/usr/bin/env bash
# Sets everything up (idempotent, see setup.sh), then runs the main job on the embedded
# default: a query-level Ships scan of the organism over JailbreakBench's 100 prompts,
# printing the heads its refusals depend on. Extra arguments go to `sahara ships`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec ./bin/run.js ships --model organism --dataset jailbreakbench --out runs/demo/ships "$@"
