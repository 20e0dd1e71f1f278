#!/usr/bin/env bash
# Sets everything up (idempotent, see setup.sh), then runs every test:
# the sidecar's Python tests (pytest) and the CLI's tests (vitest, including the
# end-to-end runs that start real sidecars over real gRPC). Ends with one line
# "tests: N passed, N failed, N skipped" over both suites; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
reports=.setup/reports
rm -rf "$reports" && mkdir -p "$reports"

echo "== sidecar: pytest ==" >&2
set +e
(cd sidecar && .venv/bin/python -m pytest tests --junitxml="../$reports/pytest.xml")
pytest_status=$?
echo "== cli: vitest ==" >&2
npx vitest run --reporter=default --reporter=json --outputFile.json="$reports/vitest.json"
vitest_status=$?
set -e

summary_status=0
node scripts/test-summary.mjs "$reports/pytest.xml" "$reports/vitest.json" || summary_status=$?
[[ $pytest_status -eq 0 && $vitest_status -eq 0 && $summary_status -eq 0 ]]
