/**
 * How ships and search jobs drive the sidecar's engine (issue 4): which engine computes the
 * ablated forwards (`fast`: many specs per forward, each resumed from its clean row, memory-budget batches;
 * `naive`: one unpadded forward per (prompt, spec), the authors' way), the memory budget, the
 * optional attribution pre-filter, the sidecar's idle time (units keep it busy while TypeScript
 * scores: src/orchestration/work.ts), and the sum of the sidecar's ForwardStats for the job's timings.
 */
import type {Fields} from '../config/fields.js'
import {ConfigError} from '../config/fields.js'
import type {EndpointPool} from '../orchestration/pool.js'
import {type Head, formatHead} from '../science/heads.js'
import {type AttributeRequest, Engine, type ForwardStats, type SidecarClient, shapedTensor} from '../sidecar/client.js'

export const ENGINES = ['fast', 'naive'] as const
export type EngineName = (typeof ENGINES)[number]

export const ENGINE_ENUM: Record<EngineName, Engine> = {
  fast: Engine.ENGINE_FAST,
  naive: Engine.ENGINE_NAIVE,
}

/** What every Forward request of a job carries. memoryBudgetGib 0 = auto (the sidecar decides). */
export interface EngineOptions {
  engine: EngineName
  memoryBudgetGib: number
}

export const DEFAULT_ENGINE: EngineOptions = {engine: 'fast', memoryBudgetGib: 0}

/** The ForwardRequest fields for these options. */
export function engineRequest(options: EngineOptions = DEFAULT_ENGINE): {engine: Engine; memoryBudgetGib: number} {
  return {engine: ENGINE_ENUM[options.engine], memoryBudgetGib: options.memoryBudgetGib}
}

/** `--memory-budget`: "auto" (0) or a positive number of GiB; a message for the usage error otherwise. */
export function parseMemoryBudget(text: string): number | string {
  if (text.trim() === 'auto') return 0
  const gib = Number(text)
  return text.trim() !== '' && Number.isFinite(gib) && gib > 0 ? gib : `--memory-budget must be "auto" or a positive number of GiB, got ${JSON.stringify(text)}`
}

/** `atp:K`: attribution patching, then exact scoring of the top K heads. */
export interface Prefilter {
  kind: 'atp'
  k: number
}

/** `--prefilter atp:K` (K a positive integer); a message for the usage error otherwise. */
export function parsePrefilter(text: string): Prefilter | string {
  const match = /^atp:(\d+)$/.exec(text.trim())
  const k = match ? Number(match[1]) : Number.NaN
  if (!match || !Number.isSafeInteger(k) || k < 1) {
    return `--prefilter must be atp:K with K a positive integer (score only the K heads with the largest attribution), got ${JSON.stringify(text)}`
  }

  return {kind: 'atp', k}
}

export function formatPrefilter(p: Prefilter): string {
  return `${p.kind}:${p.k}`
}

/** Sweep keys shared by ships and search jobs. */
export const ENGINE_KEYS = ['engine', 'memory_budget_gib', 'prefilter'] as const

/** `engine`, `memory_budget_gib` ("auto" or GiB > 0) and `prefilter` ("atp:K") of a job, errors at file:line. */
export function parseEngineFields(fields: Fields): {engineOptions: EngineOptions; prefilter?: Prefilter} {
  const engine = fields.string('engine', {default: 'fast', oneOf: ENGINES}).value as EngineName
  let memoryBudgetGib = 0
  if (fields.has('memory_budget_gib')) {
    try {
      memoryBudgetGib = fields.number('memory_budget_gib', {positive: true}).value
    } catch (error) {
      if (!(error instanceof ConfigError) || !error.detail.startsWith('expected a number')) throw error
      let text: string | undefined
      try {
        text = fields.string('memory_budget_gib').value
      } catch {
        // neither a number nor a string: reported below
      }

      if (text !== 'auto') {
        throw fields.error('memory_budget_gib', `memory_budget_gib must be "auto" or a positive number of GiB, got ${error.detail.replace(/^expected a number, got /, '')}`)
      }
    }
  }

  let prefilter: Prefilter | undefined
  if (fields.has('prefilter')) {
    const parsed = parsePrefilter(fields.string('prefilter').value)
    if (typeof parsed === 'string') throw fields.error('prefilter', parsed.replace('--prefilter', 'prefilter'))
    prefilter = parsed
  }

  return {engineOptions: {engine, memoryBudgetGib}, ...(prefilter ? {prefilter} : {})}
}

/**
 * The K heads with the largest mean |attribution| over prompts (ties: scan order), in scan order.
 * `attribution` is [N, L, H] row-major: the sidecar's first-order estimate of each head's effect.
 */
export function prefilterHeads(attribution: ArrayLike<number>, n: number, geometry: {numLayers: number; numHeads: number}, k: number): {heads: Head[]; meanAbs: Float64Array} {
  const count = geometry.numLayers * geometry.numHeads
  if (attribution.length !== n * count) throw new RangeError(`attribution has ${attribution.length} values, expected ${n} x ${count}`)
  const meanAbs = new Float64Array(count)
  for (let q = 0; q < n; q++) for (let i = 0; i < count; i++) meanAbs[i] += Math.abs(attribution[q * count + i]) / n
  const order = Array.from({length: count}, (_, i) => i)
  const key = (i: number) => (Number.isNaN(meanAbs[i]) ? Number.NEGATIVE_INFINITY : meanAbs[i])
  order.sort((a, b) => key(b) - key(a) || a - b)
  const chosen = order.slice(0, Math.min(k, count)).sort((a, b) => a - b)
  return {heads: chosen.map((i) => ({layer: Math.floor(i / geometry.numHeads), head: i % geometry.numHeads})), meanAbs}
}

/** What a job records about its pre-filter: which heads it scored, by what estimate. */
export interface PrefilterSummary {
  prefilter: string
  /** Heads scored exactly (scan order); every other head got no score. */
  scored: string[]
  /** Mean |attribution| over prompts of every head, [L][H]. */
  attribution: number[][]
  attribute_s: number
}

export function prefilterSummary(p: Prefilter, heads: Head[], meanAbs: Float64Array, geometry: {numLayers: number; numHeads: number}, seconds: number): PrefilterSummary {
  return {
    prefilter: formatPrefilter(p),
    scored: heads.map(formatHead),
    attribution: Array.from({length: geometry.numLayers}, (_, l) => Array.from(meanAbs.subarray(l * geometry.numHeads, (l + 1) * geometry.numHeads))),
    attribute_s: seconds,
  }
}

/**
 * The pre-filter: one Attribute call on the job's sidecars (another takes over if its host fails),
 * its [N, L, H] estimate checked, and the K heads it keeps.
 */
export async function runPrefilter(
  pool: EndpointPool<SidecarClient>,
  p: Prefilter,
  request: Partial<AttributeRequest> & {prompts: string[]},
  geometry: {numLayers: number; numHeads: number},
): Promise<{heads: Head[]; summary: PrefilterSummary}> {
  const t0 = performance.now()
  const expected = [request.prompts.length, geometry.numLayers, geometry.numHeads]
  const [attribution] = await pool.run([
    async (sidecar: SidecarClient) => shapedTensor(await sidecar.attribute(request), 'attribution', expected, `Attribute on ${sidecar.endpoint}`).data,
  ])
  const chosen = prefilterHeads(attribution, request.prompts.length, geometry, p.k)
  return {heads: chosen.heads, summary: prefilterSummary(p, chosen.heads, chosen.meanAbs, geometry, Math.round(performance.now() - t0) / 1000)}
}

/** ForwardStats summed over a job's requests (snake_case, for summary.json). */
export interface StatsTotals {
  requests: number
  compute_s: number
  forwards: number
  rows: number
  layer_tokens: number
  flops: number
  max_batch_rows: number
  oom_splits: number
  /** Requests whose sidecar sent no stats (older sidecars). */
  without_stats: number
}

export function emptyTotals(): StatsTotals {
  return {requests: 0, compute_s: 0, forwards: 0, rows: 0, layer_tokens: 0, flops: 0, max_batch_rows: 0, oom_splits: 0, without_stats: 0}
}

export function addStats(totals: StatsTotals, stats: ForwardStats | undefined): void {
  totals.requests++
  if (!stats) {
    totals.without_stats++
    return
  }

  totals.compute_s += stats.computeSeconds
  totals.forwards += stats.forwards
  totals.rows += stats.rows
  totals.layer_tokens += stats.layerTokens
  totals.flops += stats.flops
  totals.max_batch_rows = Math.max(totals.max_batch_rows, stats.maxBatchRows)
  totals.oom_splits += stats.oomSplits
}

/** Rounded for JSON: seconds to the microsecond. */
export function roundedTotals(t: StatsTotals): StatsTotals {
  return {...t, compute_s: Math.round(t.compute_s * 1e6) / 1e6}
}

/**
 * Heads per request for a search step: at most `planned` (the memory plan), and split in about
 * PIPELINE_SPLIT groups so that scoring one group (which needs all its prompts) overlaps the
 * sidecar's work on the next — but never below PIPELINE_MIN_GROUP heads, since every request
 * repeats the base rows its ablations resume from (cheap next to 32+ ablated rows per prompt).
 */
export const PIPELINE_SPLIT = 4
export const PIPELINE_MIN_GROUP = 32

export function pipelineGroupSize(candidates: number, planned: number): number {
  return Math.max(1, Math.min(planned, Math.max(PIPELINE_MIN_GROUP, Math.ceil(candidates / PIPELINE_SPLIT))))
}

/**
 * Filled through `outstandingTracker` (a search's clean pass and its steps share one): how long
 * the sidecar had no request of this job to work on, from the first request to `closeTrace`.
 */
export interface PipelineTrace {
  idleMs: number
  /** When the last outstanding request finished (undefined before the first send, or while busy). */
  idleSince?: number
}

/**
 * Wrap calls so that `trace` counts the time none of them was outstanding (the sidecar had no
 * request of this job), however many run at once.
 */
export function outstandingTracker(trace: PipelineTrace): <R>(call: () => Promise<R>) => Promise<R> {
  let outstanding = 0
  return async (call) => {
    if (outstanding++ === 0) {
      closeTrace(trace)
      trace.idleSince = undefined
    }

    try {
      return await call()
    } finally {
      if (--outstanding === 0) trace.idleSince = performance.now()
    }
  }
}

/** JSON has no Infinity or NaN: such a float is stored as its string and read back as a number. */
export const encodeFloat = (x: number): number | string => (Number.isFinite(x) ? x : String(x))
/** Also reads null (what JSON.stringify made of a non-finite number before) and a missing value as NaN. */
export const decodeFloat = (x: number | string | null | undefined): number => (typeof x === 'string' ? Number(x) : (x ?? Number.NaN))

/** Count the idle time up to now (call before reporting; counting goes on until the next send). */
export function closeTrace(trace: PipelineTrace): void {
  if (trace.idleSince === undefined) return
  const now = performance.now()
  trace.idleMs += now - trace.idleSince
  trace.idleSince = now
}

