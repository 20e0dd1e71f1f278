/**
 * The Ships KL on worker threads, so that the CLI keeps up with GPU sidecars.
 *
 * One thread scores ~25-40 ns per vocabulary entry (more where many tokens are less likely than
 * ~1e-8): a 7B model's full scan is 100 prompts × 1024 heads × 32000 entries, 85-130 s of one
 * core, about what one GPU needs to compute it. The main thread also receives every tensor, so
 * the KL runs on `threads` workers instead: each request's queries are split into contiguous
 * ranges, one per worker. Tensors from the sidecar client lie in shared memory, which the workers
 * read where it is; other arrays are copied into a buffer per range and transferred.
 * With 0 threads (CPU sidecars, whose cores the CLI would only take away) it runs inline.
 */
import {availableParallelism} from 'node:os'
import {Worker} from 'node:worker_threads'

import {type KlOptions, checkQueryBlocks, klOfQueries} from '../science/kl.js'

/** Environment override of the thread count (a whole number >= 0). */
export const KL_THREADS_ENV = 'SAHARA_KL_THREADS'
const MAX_AUTO_THREADS = 8

/** What the main thread sends one worker: `queries` blocks of [rows, vocab] log-probs. */
export interface KlThreadJob {
  id: number
  logprobs: Float32Array
  queries: number
  rows: number
  vocab: number
  options: KlOptions
}

export type KlThreadReply = {id: number; kl: Float64Array<ArrayBuffer>} | {id: number; error: string}

/**
 * Threads for a job whose sidecar runs on `device` (Describe's device, e.g. "cuda:0" or "cpu"):
 * SAHARA_KL_THREADS if set, else up to 8 (leaving a core) for a GPU sidecar and none for a CPU one.
 */
export function klThreadCount(device: string, env: NodeJS.ProcessEnv = process.env): number {
  const value = env[KL_THREADS_ENV]
  if (value !== undefined && value !== '') {
    if (!/^\d+$/.test(value.trim())) throw new Error(`${KL_THREADS_ENV}: expected a whole number >= 0 (0 = score on the main thread), got '${value}'`)
    return Number(value.trim())
  }

  return device.startsWith('cpu') ? 0 : Math.max(0, Math.min(MAX_AUTO_THREADS, availableParallelism() - 1))
}

interface Pending {
  worker: Worker
  resolve: (kl: Float64Array) => void
  reject: (error: Error) => void
}

export class KlThreads {
  private readonly pending = new Map<number, Pending>()
  private nextId = 0
  private nextWorker = 0
  /** Why the pool cannot score any more (a worker died, or close was called). */
  private stopped?: Error

  private constructor(private readonly workers: Worker[]) {
    for (const worker of workers) {
      worker.on('message', (reply: KlThreadReply) => this.settle(reply))
      worker.on('error', (error) => this.stop(new Error(`KL thread failed: ${error.message}`)))
      worker.on('exit', (code) => this.stop(new Error(`KL thread exited (code ${code})`)))
      worker.unref() // an idle worker never keeps the CLI alive; one with work does (run, settle)
    }
  }

  static start(threads: number): KlThreads {
    const url = new URL('kl-thread.js', import.meta.url)
    // execArgv: [] — the CLI's own Node flags (an --input-type, say) are not the worker's
    return new KlThreads(Array.from({length: threads}, () => new Worker(url, {execArgv: []})))
  }

  get threads(): number {
    return this.workers.length
  }

  /**
   * KL of every ablated row against its query's clean row (row 0 of each block) for `queries`
   * blocks of [rows, vocab] log-probs: [queries * (rows - 1)], query-major. `logprobs` stays
   * usable (read in place if shared, else copied); it must not change until this resolves.
   */
  async score(logprobs: Float32Array, queries: number, rows: number, vocab: number, options: KlOptions): Promise<Float64Array> {
    checkQueryBlocks(logprobs, queries, rows, vocab)
    if (this.workers.length === 0) return klOfQueries(logprobs, queries, rows, vocab, options)
    if (this.stopped) throw this.stopped
    const parts = Math.min(this.workers.length, queries)
    const firstWorker = this.nextWorker
    this.nextWorker = (firstWorker + parts) % this.workers.length // the next request starts on the next free ones
    const out = new Float64Array(queries * (rows - 1))
    const jobs = Array.from({length: parts}, (_, part) => {
      const first = Math.floor((part * queries) / parts)
      const last = Math.floor(((part + 1) * queries) / parts)
      const range = logprobs.subarray(first * rows * vocab, last * rows * vocab)
      // shared: the worker reads it in place; else an own, transferable copy
      const slice = range.buffer instanceof SharedArrayBuffer ? range : range.slice()
      return this.run(this.workers[(firstWorker + part) % this.workers.length], {id: 0, logprobs: slice, queries: last - first, rows, vocab, options}).then((kl) =>
        out.set(kl, first * (rows - 1)),
      )
    })
    await Promise.all(jobs)
    return out
  }

  async close(): Promise<void> {
    this.stop(new Error('KL threads closed'))
    await Promise.all(this.workers.map((worker) => worker.terminate()))
  }

  private run(worker: Worker, job: KlThreadJob): Promise<Float64Array> {
    const id = this.nextId++
    return new Promise<Float64Array>((resolve, reject) => {
      this.pending.set(id, {worker, resolve, reject})
      worker.ref()
      const buffer = job.logprobs.buffer
      worker.postMessage({...job, id}, buffer instanceof SharedArrayBuffer ? [] : [buffer])
    })
  }

  private settle(reply: KlThreadReply): void {
    const pending = this.pending.get(reply.id)
    if (!pending) return
    this.pending.delete(reply.id)
    if (![...this.pending.values()].some((p) => p.worker === pending.worker)) pending.worker.unref()
    if ('error' in reply) pending.reject(new Error(`KL thread: ${reply.error}`))
    else pending.resolve(reply.kl)
  }

  /** No more scoring: every job in flight fails with `error`, and so does every later one. */
  private stop(error: Error): void {
    this.stopped ??= error
    for (const pending of this.pending.values()) pending.reject(error)
    this.pending.clear()
  }
}
