import {execa} from 'execa'
import {availableParallelism} from 'node:os'
import {describe, expect, it} from 'vitest'

import {klOfQueries} from '../../src/science/kl.js'
import {klThreadCount} from '../../src/orchestration/kl-threads.js'

// Worker threads run JavaScript: the pool is tested as built (test/global-setup.ts builds dist/).
type KlThreadsModule = typeof import('../../src/orchestration/kl-threads.js')
const built = async (): Promise<KlThreadsModule> => (await import(new URL('../../dist/orchestration/kl-threads.js', import.meta.url).href)) as KlThreadsModule

/** `queries` blocks of [rows, vocab] normalised log-probs, seeded. */
function logprobBlocks(queries: number, rows: number, vocab: number, seed = 5): Float32Array {
  const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31)
  const out = new Float32Array(queries * rows * vocab)
  for (let r = 0; r < queries * rows; r++) {
    const logits = Array.from({length: vocab}, () => rand() * 20)
    const lse = Math.log(logits.reduce((z, l) => z + Math.exp(l), 0))
    for (let v = 0; v < vocab; v++) out[r * vocab + v] = logits[v] - lse
  }

  return out
}

describe('klThreadCount', () => {
  it('uses no threads beside a CPU sidecar and leaves a core beside a GPU one', () => {
    expect(klThreadCount('cpu', {})).toBe(0)
    expect(klThreadCount('cuda:0', {})).toBe(Math.max(0, Math.min(8, availableParallelism() - 1)))
  })

  it('takes SAHARA_KL_THREADS, and refuses anything but a whole number', () => {
    expect(klThreadCount('cpu', {SAHARA_KL_THREADS: '3'})).toBe(3)
    expect(klThreadCount('cuda:0', {SAHARA_KL_THREADS: '0'})).toBe(0)
    for (const bad of ['-1', '1.5', 'two']) {
      expect(() => klThreadCount('cpu', {SAHARA_KL_THREADS: bad})).toThrow(/SAHARA_KL_THREADS: expected a whole number >= 0 .* got '/)
    }
  })
})

describe('KlThreads', () => {
  it('gives exactly the main thread\'s KLs, for concurrent requests and fewer queries than threads', async () => {
    const {KlThreads} = await built()
    const threads = KlThreads.start(3)
    try {
      expect(threads.threads).toBe(3)
      const requests = [
        {queries: 5, rows: 4, vocab: 300},
        {queries: 2, rows: 3, vocab: 1000},
        {queries: 1, rows: 6, vocab: 50},
      ].map((shape, i) => ({...shape, logprobs: logprobBlocks(shape.queries, shape.rows, shape.vocab, 10 + i)}))
      // as the sidecar client delivers tensors: in shared memory, which the workers read in place
      const shared = new Float32Array(new SharedArrayBuffer(requests[0].logprobs.byteLength))
      shared.set(requests[0].logprobs)
      requests.push({...requests[0], logprobs: shared})
      for (const smoothing of [1e-12, 0]) {
        const scored = await Promise.all(requests.map((r) => threads.score(r.logprobs, r.queries, r.rows, r.vocab, {smoothing})))
        for (const [i, r] of requests.entries()) {
          expect(scored[i]).toEqual(klOfQueries(r.logprobs, r.queries, r.rows, r.vocab, {smoothing}))
          expect(scored[i].length).toBe(r.queries * (r.rows - 1))
          expect(r.logprobs.length).toBe(r.queries * r.rows * r.vocab) // copied, not detached
        }
      }
    } finally {
      await threads.close()
    }
  })

  it('reports a worker\'s error and a wrong size, and scores inline with 0 threads', async () => {
    const {KlThreads} = await built()
    const threads = KlThreads.start(2)
    const logprobs = logprobBlocks(2, 3, 40)
    try {
      await expect(threads.score(logprobs, 2, 3, 40, {smoothing: Number.NaN})).rejects.toThrow(/KL thread: smoothing must be a finite number >= 0/)
      await expect(threads.score(logprobs, 3, 3, 40, {})).rejects.toThrow(/expected queries\*rows\*vocab = 3\*3\*40/)
      expect(await threads.score(logprobs, 2, 3, 40, {})).toEqual(klOfQueries(logprobs, 2, 3, 40)) // still working
    } finally {
      await threads.close()
    }

    const inline = KlThreads.start(0)
    expect(inline.threads).toBe(0)
    expect(await inline.score(logprobs, 2, 3, 40, {})).toEqual(klOfQueries(logprobs, 2, 3, 40))
    await inline.close()
  })

  it('keeps the CLI alive while a worker scores, and lets it exit afterwards', async () => {
    // Nothing but the worker's job is pending here: an unref'd worker would let Node exit (code 13).
    const url = new URL('../../dist/orchestration/kl-threads.js', import.meta.url).href
    const script = `const {KlThreads} = await import(${JSON.stringify(url)})
const threads = KlThreads.start(1)
const kl = await threads.score(new Float32Array(2 * 3 * 8).fill(Math.log(1 / 8)), 2, 3, 8, {})
console.log(JSON.stringify(Array.from(kl)))
await threads.close()`
    const {stdout, exitCode} = await execa('node', ['--input-type=module', '-e', script], {reject: false, timeout: 20_000})
    expect(exitCode).toBe(0)
    expect(JSON.parse(stdout)).toEqual(Array.from(klOfQueries(new Float32Array(2 * 3 * 8).fill(Math.log(1 / 8)), 2, 3, 8)))
  })

  it('fails every later request once closed', async () => {
    const {KlThreads} = await built()
    const threads = KlThreads.start(1)
    await threads.close()
    await expect(threads.score(new Float32Array(6), 1, 2, 3, {})).rejects.toThrow(/KL threads closed/)
  })
})
