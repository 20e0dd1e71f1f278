// Time the CLI's symmetric eigensolver (src/science/subspace.ts, built into dist/) on the Gram
// matrix of N prompts, as a search step computes it: `npm run compile && node bench/eigen-timing.mjs [N] [d]`.
// N defaults to 520 (AdvBench), d (the hidden size of the representation) to 768.
import {gram, matrix, symmetricEigen} from '../dist/science/subspace.js'

const n = Number(process.argv[2] ?? 520)
const d = Number(process.argv[3] ?? 768)
let state = 12345
const uniform = () => {
  state = (state * 1103515245 + 12345) % 2147483648
  return state / 2147483648 - 0.5
}

// Hidden-state-like rows: a shared offset (the mean activation) plus per-prompt variation.
const m = matrix(n, d)
for (let i = 0; i < n * d; i++) m.data[i] = uniform() + (i % d < 8 ? 3 : 0)
const g = gram(m)
const times = []
for (let rep = 0; rep < 5; rep++) {
  const t = performance.now()
  symmetricEigen(g)
  times.push(performance.now() - t)
}

times.sort((a, b) => a - b)
console.log(JSON.stringify({n, d, runs_ms: times.map((x) => Math.round(x)), median_ms: Math.round(times[2])}))
