// How fast Forward's log-probs travel from the sidecar to the CLI: a real sidecar (on a model where
// the forward costs little next to its vocabulary, e.g. 1 layer, d 64, 64 heads, vocab 32000),
// the CLI's real client (src/sidecar/client.ts, built into dist/), one request at a time so
// nothing overlaps. Per request: wall time, the sidecar's compute time, and MB/s of the rest
// (tokenising, bytes, gRPC, reassembly). `npm run compile` first, then
//   sidecar/.venv/bin/python bench/build_random_llama.py /tmp/wide --layers 1 --hidden 64 --heads 64 --intermediate 128
//   node bench/transfer-timing.mjs /tmp/wide [prompts=20] [repeats=6] [logprob_support=0]
// Tensors are given back to the client after each request, as the Ships job does
// (SAHARA_FRESH_BUFFERS=1: not, to measure what recycling saves).
import {SidecarClient} from '../dist/sidecar/client.js'
import {startSidecar} from '../dist/sidecar/process.js'

const [model, prompts, repeats, logprobSupport] = [process.argv[2], Number(process.argv[3] ?? 20), Number(process.argv[4] ?? 6), Number(process.argv[5] ?? 0)]
if (!model) throw new Error('usage: node bench/transfer-timing.mjs MODEL_DIR [prompts] [repeats] [logprob_support]')
const fresh = process.env.SAHARA_FRESH_BUFFERS === '1' // 1: every request into fresh memory (no recycling), to compare
const sidecar = await startSidecar({model})
try {
  const client = new SidecarClient(sidecar.endpoint)
  const facts = await client.describe()
  const specs = [{heads: [], method: 1, eps: 0}]
  for (let layer = 0; layer < facts.numLayers && specs.length <= 64; layer++)
    for (let head = 0; head < facts.numHeads && specs.length <= 64; head++) specs.push({heads: [{layer, head}], method: 1, eps: 0})
  const request = {prompts: Array.from({length: prompts}, (_, i) => `Prompt number ${i}: how are transfers timed?`), specs, returnLogprobs: true, logprobSupport}
  await client.forward({...request, prompts: request.prompts.slice(0, 1)}) // warm-up
  const rates = []
  for (let rep = 0; rep < repeats; rep++) {
    const start = performance.now()
    const result = await client.forward(request)
    const wall = (performance.now() - start) / 1000
    const mb = result.tensors.get('logprobs').data.byteLength / 1e6
    const rest = wall - result.stats.computeSeconds
    rates.push(mb / rest)
    if (!fresh) client.recycle(result)
    console.log(`${mb.toFixed(mb < 10 ? 1 : 0)} MB: wall ${wall.toFixed(2)} s, compute ${result.stats.computeSeconds.toFixed(2)} s, rest ${rest.toFixed(2)} s = ${(mb / rest).toFixed(0)} MB/s`)
  }

  rates.sort((a, b) => a - b)
  console.log(`median ${rates[Math.floor(rates.length / 2)].toFixed(0)} MB/s (range ${rates[0].toFixed(0)}-${rates.at(-1).toFixed(0)})`)
} finally {
  await sidecar.stop()
}
