// Throughput of the CLI's Ships KL (src/science/kl.ts, kl-threads.ts, built into dist/) on
// 7B-like requests, inline and on worker threads: `npm run compile && node bench/kl-threads.mjs [sigma] [threads...]`.
// Each request is 4 prompts x (1 clean + 128 heads) rows of a 32000-token vocabulary, log-probs
// from N(0, sigma^2) logits (sigma 3 puts ~13% of the entries below -18.4, where log(exp(b) + s)
// needs a real logarithm; sigma 4 ~50%). Prints ns per vocabulary entry and entries per second.
import {availableParallelism} from 'node:os'

import {klOfQueries} from '../dist/science/kl.js'
import {KlThreads} from '../dist/orchestration/kl-threads.js'

const sigma = Number(process.argv[2] ?? 3)
const counts = process.argv.length > 3 ? process.argv.slice(3).map(Number) : [0, ...new Set([1, 2, Math.max(1, availableParallelism() - 1)])]
const [queries, rows, vocab, requests] = [4, 129, 32_000, 4]
let state = 12_345
const uniform = () => ((state = (state * 1_103_515_245 + 12_345) % 2_147_483_648) + 0.5) / 2_147_483_648
const gauss = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform())

const data = Array.from({length: requests}, () => {
  const out = new Float32Array(new SharedArrayBuffer(queries * rows * vocab * 4)) // as the sidecar client delivers tensors
  for (let q = 0; q < queries; q++) {
    const base = Float64Array.from({length: vocab}, () => gauss() * sigma)
    for (let r = 0; r < rows; r++) {
      const logits = base.map((x) => x + (r === 0 ? 0 : gauss() * 0.3)) // an ablation moves every logit a little
      const lse = Math.log(logits.reduce((z, x) => z + Math.exp(x), 0))
      out.set(logits.map((x) => x - lse), (q * rows + r) * vocab)
    }
  }

  return out
})
const entries = requests * queries * (rows - 1) * vocab
const reference = data.map((d) => klOfQueries(d, queries, rows, vocab))

for (const threads of counts) {
  const pool = KlThreads.start(threads)
  const times = []
  for (let rep = 0; rep < 3; rep++) {
    const t = performance.now()
    const scored = await Promise.all(data.map((d) => pool.score(d, queries, rows, vocab, {}))) // requests in flight together
    times.push(performance.now() - t)
    if (scored.some((kl, i) => kl.some((x, j) => x !== reference[i][j]))) throw new Error(`threads=${threads}: KLs differ from the inline ones`)
  }

  await pool.close()
  const best = Math.min(...times)
  console.log(JSON.stringify({sigma, threads, entries, best_ms: Math.round(best), ns_per_entry: +((best * 1e6) / entries).toFixed(1), entries_per_s: Math.round(entries / (best / 1000))}))
}
