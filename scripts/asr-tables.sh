#!/usr/bin/env bash
# The ASR tables of docs/ASR.md: for a model (default organism) on JailbreakBench, UA eps 1e-5,
# greedy, 24 new tokens, paper judge: ASR and flip rate of the top-1..5 query-level Ships heads
# (UA, and SC for the top-1..3), and of 5 random 3-head sets (seeds 1-5, drawn over all heads).
# One detached sidecar serves every run. Output: a Markdown table on stdout, runs under OUT.
#   scripts/asr-tables.sh [MODEL] [OUT]
set -euo pipefail
r3='def r3: if . == null then "n/a" else (. * 1000 | round / 1000 | tostring) end;'
cd "$(dirname "$0")/.."
MODEL="${1:-organism}"
OUT="${2:-runs/asr-tables-$MODEL}"
DATASET="${DATASET:-jailbreakbench}"
TOKENS="${TOKENS:-24}"
STATE="$OUT/state"
mkdir -p "$OUT"
EP=$(./bin/run.js sidecar start --model "$MODEL" --state-dir "$STATE" --quiet --json | jq -r .endpoint)
trap './bin/run.js sidecar stop --state-dir "$STATE" --quiet >/dev/null' EXIT
./bin/run.js ships --model "$MODEL" --dataset "$DATASET" --endpoint "$EP" --out "$OUT/ships" --quiet --json >/dev/null

asr() { # name, then asr flags
  local name=$1; shift
  ./bin/run.js asr --model "$MODEL" --dataset "$DATASET" --max-new-tokens "$TOKENS" --endpoint "$EP" --out "$OUT/$name" --quiet --json "$@" >"$OUT/$name.json"
  jq -r --arg name "$name" "$r3"'"| \($name) | \(.head_names | join(",") | if . == "" then "-" else . end) | \(.method) | \(.asr | r3) | \(.baseline_asr | r3) | \(.flip_rate | r3) | \(.n_flipped)/\(.n_refused_baseline) | \(.parameters.percent_text) |"' "$OUT/$name.json"
}

echo "| run | heads | method | ASR | baseline ASR | flip rate | flipped | params |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for k in 1 2 3 4 5; do asr "top$k-ua" --heads-from "$OUT/ships" --top "$k" --method ua; done
for k in 1 2 3; do asr "top$k-sc" --heads-from "$OUT/ships" --top "$k" --method sc; done
for s in 1 2 3 4 5; do asr "random3-s$s" --heads random:3 --seed "$s"; done
jq -s -r "$r3"'"| random 3-head sets, mean of 5 | | ua | \(map(.asr) | add / length | r3) | | \(map(.flip_rate) | add / length | r3) | | |"' "$OUT"/random3-s*.json
