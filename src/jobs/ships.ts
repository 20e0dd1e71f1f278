/**
 * Query-level Ships (METHOD.md, paper Eq. 9) for every head and every query of a dataset.
 *
 * Describe gives L and H. Prompts go to the sidecar in chunks; each Forward asks, for every
 * prompt of the chunk, for the clean model plus one single-head ablation per head (all L×H,
 * or a group of heads when the vocabulary is too large for one request), log-probs only. KL
 * per (query, head) is computed here (src/science/kl.ts), then per-query top-k and the dataset
 * ranking (src/science/ships.ts). Output: OUT/ships.jsonl (one line per query) and
 * OUT/summary.json (also the job's result).
 *
 * Every request names the engine and memory budget (src/jobs/engine.ts). Requests are work units
 * (src/orchestration/work.ts): spread over the sidecars of the pool, several in flight per
 * sidecar (the next one computes while this one's KL is computed here), each unit's KLs stored
 * as it finishes and reused by a re-run; ships.jsonl is written from them in prompt order. With a pre-filter (`atp:K`) one
 * Attribute call ranks all heads by a first-order estimate and only the top K are scanned: the
 * others get no KL, the per-query top-k and the ranking are over the scanned heads, and the
 * summary lists them (`prefilter.scored`).
 */
import {mkdirSync} from 'node:fs'
import {resolve} from 'node:path'

import type {Fields} from '../config/fields.js'
import type {Dataset} from '../data/datasets.js'
import type {ResolvedModel} from '../models.js'
import {type Head, allHeads, formatHead} from '../science/heads.js'
import {DEFAULT_SMOOTHING} from '../science/kl.js'
import {KlThreads, klThreadCount} from '../orchestration/kl-threads.js'
import {type HeadKl, type RankedHead, rankHeads, topKHeads} from '../science/ships.js'
import {resultJson, writeFileAtomic} from '../orchestration/files.js'
import {type Unit, singleClientWork} from '../orchestration/work.js'
import {AblationMethod, type AblationSpec, PromptTemplate, type SidecarInfo, shapedTensor, sidecarInfo} from '../sidecar/client.js'
import {
  DEFAULT_ENGINE,
  ENGINE_KEYS,
  type EngineName,
  type EngineOptions,
  type Prefilter,
  type PipelineTrace,
  type PrefilterSummary,
  type StatsTotals,
  addStats,
  closeTrace,
  decodeFloat,
  emptyTotals,
  encodeFloat,
  engineRequest,
  outstandingTracker,
  parseEngineFields,
  roundedTotals,
  runPrefilter,
} from './engine.js'
import {matrixCells, parseMatrix} from './matrix.js'
import {lengthOrder} from './prompt-order.js'
import type {JobKind, JobSpec, ParseContext, RunContext} from './registry.js'

export const METHODS = ['ua', 'sc', 'mean'] as const
export type Method = (typeof METHODS)[number]
export const TEMPLATES = ['paper', 'direct', 'chat'] as const
export type Template = (typeof TEMPLATES)[number]

export const METHOD_ENUM: Record<Method, AblationMethod> = {
  ua: AblationMethod.ABLATION_METHOD_UA,
  sc: AblationMethod.ABLATION_METHOD_SC,
  mean: AblationMethod.ABLATION_METHOD_MEAN,
}
export const TEMPLATE_ENUM: Record<Template, PromptTemplate> = {
  paper: PromptTemplate.PROMPT_TEMPLATE_PAPER,
  direct: PromptTemplate.PROMPT_TEMPLATE_DIRECT,
  chat: PromptTemplate.PROMPT_TEMPLATE_CHAT,
}

/** Floats of log-probs per Forward request: 2^27 float32 = 512 MiB, keeps one request bounded. */
export const MAX_FLOATS_PER_REQUEST = 2 ** 27
/** Prompts per request at most, so progress is reported (and partial results written) as it goes. */
export const MAX_PROMPTS_PER_REQUEST = 32

export interface ShipsParams {
  dataset: Dataset
  method: Method
  eps: number
  template: Template
  topK: number
  smoothing: number
  /** Only the first `limit` prompts. */
  limit?: number
  maxFloatsPerRequest?: number
  /** Prompts per work unit (one Forward) at most; default 32. Smaller units spread over more sidecars. */
  promptsPerUnit?: number
  /** Engine and memory budget sent with every Forward (default fast, auto). */
  engineOptions?: EngineOptions
  /** Scan only the top-K heads by attribution (UA and SC only). */
  prefilter?: Prefilter
  /**
   * K > 0: the KL over each prompt's K most likely clean tokens and the rest of the mass, a lower
   * bound of the full KL with (K+1)/vocab of the data (ForwardRequest.logprob_support); 0 or absent: every token.
   */
  logprobSupport?: number
}

/** Where a job's time went. */
/** What one unit stores: per prompt of its chunk, the KL of each head of its group (JSON-safe). */
interface ShipsUnit {
  kl: (number | string)[][]
  promptTokens: number[]
}

export interface ShipsTimings {
  describe_s: number
  /** The pre-filter's Attribute call (0 without one). */
  attribute_s: number
  /** Time the scan waited for Forward results (requests are pipelined, so sidecar work overlaps the KL). */
  forward_s: number
  /** KL and top-k in TypeScript (mostly while the sidecar computes the next request). */
  kl_s: number
  /** Worker threads the KL ran on (0 = the main thread; see src/orchestration/kl-threads.ts). */
  kl_threads: number
  /** Time the sidecar had no request of this scan to work on (the CLI was the bottleneck). */
  sidecar_idle_s: number
  total_s: number
  engine: EngineName
  /** GiB sent with every request; "auto" = the sidecar's own budget. */
  memory_budget_gib: number | 'auto'
  /** The sidecar's ForwardStats, summed over the scan's Forward requests. */
  sidecar_stats: StatsTotals
}

export interface ShipsQueryLine {
  index: number
  prompt: string
  prompt_tokens: number
  top: {head: string; layer: number; head_index: number; kl: number}[]
}

export interface ShipsSummary {
  kind: 'ships'
  model: string
  model_source: string
  family: string
  num_layers: number
  num_heads: number
  vocab_size: number
  dataset: string
  dataset_path: string
  method: Method
  eps: number
  template: Template
  top_k: number
  smoothing: number
  /** 0: the KL over every token; K: over each prompt's K most likely clean tokens and the rest (a lower bound). */
  logprob_support: number
  n_queries: number
  sidecar: SidecarInfo
  requests: number
  timings: ShipsTimings
  /** Present with a pre-filter: which heads were scanned (the only ones in `heads`). */
  prefilter?: PrefilterSummary
  /** All L×H heads (or the pre-filter's scanned heads), ranked by mean KL over the queries (largest first). */
  heads: RankedHead[]
}

export interface Plan {
  promptsPerRequest: number
  headGroups: Head[][]
}

/**
 * How to split the scan into bounded requests: each request carries the clean spec plus a group
 * of heads for a chunk of prompts, with prompts × (1 + heads) × vocab <= maxFloats.
 */
export function planRequests(
  heads: Head[],
  vocab: number,
  maxFloats: number = MAX_FLOATS_PER_REQUEST,
  maxPrompts: number = MAX_PROMPTS_PER_REQUEST,
): Plan {
  const rowsBudget = Math.max(2, Math.floor(maxFloats / vocab))
  const groupSize = Math.max(1, Math.min(heads.length, rowsBudget - 1))
  const headGroups: Head[][] = []
  for (let i = 0; i < heads.length; i += groupSize) headGroups.push(heads.slice(i, i + groupSize))
  const promptsPerRequest = Math.max(1, Math.min(maxPrompts, Math.floor(rowsBudget / (1 + groupSize))))
  return {promptsPerRequest, headGroups}
}

const seconds = (ms: number) => Math.round(ms) / 1000

export async function runShips(
  model: ResolvedModel,
  params: ShipsParams,
  context: RunContext,
): Promise<ShipsSummary> {
  const {client, outDir, log} = context
  const t0 = performance.now()
  const facts = await client.describe()
  const tDescribe = performance.now() - t0
  const geometry = {numLayers: facts.numLayers, numHeads: facts.numHeads}
  if (geometry.numLayers === 0 || geometry.numHeads === 0 || facts.vocabSize === 0) {
    throw new Error(`Describe on ${client.endpoint} reported L=${facts.numLayers}, H=${facts.numHeads}, vocab=${facts.vocabSize}: nothing to scan`)
  }

  const prompts = params.limit === undefined ? params.dataset.prompts : params.dataset.prompts.slice(0, params.limit)
  const engineOptions = params.engineOptions ?? DEFAULT_ENGINE
  const allOfThem = allHeads(geometry)
  let heads = allOfThem
  const work = context.work ?? singleClientWork(client, {name: 'ships', key: ''})
  let prefilter: PrefilterSummary | undefined
  if (params.prefilter) {
    if (params.method === 'mean') throw new Error('the attribution pre-filter needs method ua or sc (mean ablation has no eps to differentiate)')
    const request = {prompts, template: TEMPLATE_ENUM[params.template], method: METHOD_ENUM[params.method], eps: params.eps}
    ;({heads, summary: prefilter} = await runPrefilter(work.pool, params.prefilter, request, geometry))
  }

  const headIndex = heads.map((h) => h.layer * geometry.numHeads + h.head)
  const topK = Math.min(params.topK, heads.length)
  const support = params.logprobSupport ?? 0
  if (support >= facts.vocabSize) {
    throw new Error(`logprob_support ${support} is not below ${model.name}'s vocabulary size ${facts.vocabSize}; 0 scores every token`)
  }

  const width = support > 0 ? support + 1 : facts.vocabSize // log-probs per row, as sent and scored
  const plan = planRequests(heads, width, params.maxFloatsPerRequest, params.promptsPerUnit)
  const order = await lengthOrder(client, prompts, TEMPLATE_ENUM[params.template])
  const nChunks = Math.ceil(prompts.length / plan.promptsPerRequest)
  const nRequests = nChunks * plan.headGroups.length
  log(
    `ships: ${model.name} (${facts.family}, L=${geometry.numLayers} H=${geometry.numHeads} vocab=${facts.vocabSize}) on ${params.dataset.name} ` +
      `(${prompts.length} prompts), ${params.method} eps=${formatEps(params.eps)}, ${engineOptions.engine} engine, ` +
      `${prefilter ? `${heads.length} heads (${prefilter.prefilter}), ` : ''}${support > 0 ? `KL over ${support} tokens + the rest, ` : ''}${nRequests} requests`,
  )

  mkdirSync(outDir, {recursive: true})
  const jsonlPath = resolve(outDir, 'ships.jsonl')
  let forwardMs = 0
  let klMs = 0
  const totals = emptyTotals()
  const trace: PipelineTrace = {idleMs: 0}
  const tracked = outstandingTracker(trace)
  const options = {smoothing: params.smoothing}
  const klThreads = KlThreads.start(klThreadCount(facts.device))
  const methodEnum = METHOD_ENUM[params.method]
  const specsOf = (group: Head[]): AblationSpec[] => [
    {heads: [], method: methodEnum, eps: params.eps},
    ...group.map((h) => ({heads: [h], method: methodEnum, eps: params.eps})),
  ]

  // Unit r covers prompt chunk floor(r / groups) and head group r % groups: one Forward, its KLs
  // computed as it arrives (while the sidecars work on the next units), stored as they finish.
  // Chunks take the prompts by length (src/jobs/prompt-order.ts); chunkOf gives dataset indices.
  const groups = plan.headGroups.length
  const groupOffset = plan.headGroups.map((_, g) => plan.headGroups.slice(0, g).reduce((n, x) => n + x.length, 0))
  const chunkOf = (c: number) => order.slice(c * plan.promptsPerRequest, (c + 1) * plan.promptsPerRequest)
  const modelId = model.kind === 'remote' ? facts.model : model.source
  let done = 0
  const units: Unit<ShipsUnit>[] = Array.from({length: nRequests}, (_, r) => {
    const c = Math.floor(r / groups)
    const group = plan.headGroups[r % groups]
    const chunk = chunkOf(c).map((i) => prompts[i])
    const start = c * plan.promptsPerRequest
    const range = `prompts ${start + 1}-${start + chunk.length} of ${prompts.length} by length`
    return {
      id: `${range}, heads ${formatHead(group[0])}-${formatHead(group.at(-1)!)}`,
      // The key names all its KLs depend on, so the unit is shared: a job that differs only in what
      // does not change them (top_k, the memory budget, another name) reuses it.
      shared: true,
      key: {
        ships: {model: modelId, dtype: facts.dtype, fingerprint: facts.modelFingerprint, prompts: chunk, template: params.template, method: params.method, eps: params.eps},
        heads: group.map(formatHead),
        smoothing: params.smoothing,
        engine: engineOptions.engine,
        ...(support > 0 ? {logprob_support: support} : {}), // absent for every token: older stored units still match
      },
      async run(sidecar) {
        const tf = performance.now()
        const result = await tracked(() =>
          sidecar.forward({prompts: chunk, template: TEMPLATE_ENUM[params.template], specs: specsOf(group), returnLogprobs: true, logprobSupport: support, ...engineRequest(engineOptions)}),
        )
        forwardMs += performance.now() - tf
        addStats(totals, result.stats)
        const nSpecs = group.length + 1
        const logprobs = shapedTensor(result, 'logprobs', [chunk.length, nSpecs, width], `Forward on ${sidecar.endpoint}`)
        const tk = performance.now()
        if (!(logprobs.data instanceof Float32Array)) throw new Error(`Forward on ${sidecar.endpoint}: tensor logprobs must be float32`)
        const scored = await klThreads.score(logprobs.data, chunk.length, nSpecs, width, options)
        sidecar.recycle(result) // scored: its memory takes the next request's log-probs
        const kl = chunk.map((_, q) => Array.from(scored.subarray(q * group.length, (q + 1) * group.length), encodeFloat))
        klMs += performance.now() - tk
        context.progress?.(++done, nRequests, `requests (${range})`)
        return {kl, promptTokens: result.promptTokens}
      },
    }
  })
  const results = await work.map(units).finally(() => klThreads.close())
  closeTrace(trace)
  if (work.counts.reused > 0) log(`  ${work.counts.reused} of ${nRequests} units reused from the store`)

  // Back in dataset order: every query's KL per head, and its line.
  const perQuery = prompts.map(() => new Float64Array(allOfThem.length).fill(prefilter ? Number.NEGATIVE_INFINITY : 0))
  const promptTokens = prompts.map(() => 0)
  for (let c = 0; c < nChunks; c++) {
    const chunk = chunkOf(c)
    for (let g = 0; g < groups; g++) {
      const unit = results[c * groups + g]
      for (const [q, index] of chunk.entries()) {
        for (let j = 0; j < plan.headGroups[g].length; j++) perQuery[index][headIndex[groupOffset[g] + j]] = decodeFloat(unit.kl[q][j])
      }
    }

    for (const [q, index] of chunk.entries()) promptTokens[index] = results[c * groups].promptTokens[q] ?? 0
  }

  const lines = prompts.map((prompt, index) => {
    const top = topKHeads(perQuery[index], geometry, topK)
    const line: ShipsQueryLine = {
      index,
      prompt,
      prompt_tokens: promptTokens[index],
      top: top.map((h: HeadKl) => ({head: formatHead(h), layer: h.layer, head_index: h.head, kl: h.kl})),
    }
    return resultJson(line)
  })

  writeFileAtomic(jsonlPath, `${lines.join('\n')}\n`)

  const scanned = new Set(headIndex)
  const ranked = rankHeads(perQuery, geometry, topK).filter((h) => scanned.has(h.layer * geometry.numHeads + h.head))
  const summary: ShipsSummary = {
    kind: 'ships',
    model: model.name,
    model_source: model.kind === 'remote' ? facts.model : model.source,
    family: facts.family,
    num_layers: geometry.numLayers,
    num_heads: geometry.numHeads,
    vocab_size: facts.vocabSize,
    dataset: params.dataset.name,
    dataset_path: params.dataset.path,
    method: params.method,
    eps: params.eps,
    template: params.template,
    top_k: params.topK,
    smoothing: params.smoothing,
    logprob_support: support,
    n_queries: prompts.length,
    sidecar: sidecarInfo(client.endpoint, facts),
    requests: totals.requests,
    timings: {
      describe_s: seconds(tDescribe),
      attribute_s: prefilter?.attribute_s ?? 0,
      forward_s: seconds(forwardMs),
      kl_s: seconds(klMs),
      kl_threads: klThreads.threads,
      sidecar_idle_s: seconds(trace.idleMs),
      total_s: seconds(performance.now() - t0),
      engine: engineOptions.engine,
      memory_budget_gib: engineOptions.memoryBudgetGib === 0 ? 'auto' : engineOptions.memoryBudgetGib,
      sidecar_stats: roundedTotals(totals),
    },
    ...(prefilter ? {prefilter} : {}),
    heads: ranked,
  }
  writeFileAtomic(resolve(outDir, 'summary.json'), `${resultJson(summary, 2)}\n`)
  return summary
}

// ---- the `ships` job kind for sweeps --------------------------------------------------------

/** Matrix axes (each a value or a list) and plain options of a ships job. */
const OPTION_KEYS = ['matrix', 'top_k', 'limit', 'smoothing', 'logprob_support', 'prompts_per_unit', ...ENGINE_KEYS] as const

/** `1e-5` for 0.00001: short, stable, file-name safe. */
export function formatEps(eps: number): string {
  return eps.toExponential().replace('e+', 'e').replace(/\.?0+e/, 'e')
}

export const shipsKind: JobKind<ShipsParams, ShipsSummary> = {
  kind: 'ships',
  description: 'query-level Ships: KL(clean || one head ablated) for every head and query, ranked over the dataset',
  keys: OPTION_KEYS,
  parse(fields: Fields, context: ParseContext): JobSpec<ShipsParams>[] {
    const matrix = parseMatrix(fields, context, 'a ships matrix')
    const topK = fields.number('top_k', {default: 10, integer: true, min: 1}).value
    const limit = fields.has('limit') ? fields.number('limit', {integer: true, min: 1}).value : undefined
    const smoothing = fields.number('smoothing', {default: DEFAULT_SMOOTHING, min: 0}).value
    const promptsPerUnit = fields.number('prompts_per_unit', {default: MAX_PROMPTS_PER_REQUEST, integer: true, min: 1}).value
    const logprobSupport = fields.number('logprob_support', {default: 0, integer: true, min: 0}).value
    const {engineOptions, prefilter} = parseEngineFields(fields)
    const prefix = fields.has('name') ? fields.string('name').value : 'ships'

    const jobs: JobSpec<ShipsParams>[] = []
    for (const {model, dataset, method, eps, template, nameParts} of matrixCells(matrix, prefix)) {
      if (prefilter && method === 'mean') throw fields.error('prefilter', 'the attribution pre-filter needs method ua or sc (mean ablation has no eps to differentiate)')
      if (prefilter) nameParts.push(`atp${prefilter.k}`)
      jobs.push({kind: 'ships', name: nameParts.join('-'), model, params: {dataset, method, eps, template, topK, smoothing, limit, promptsPerUnit, engineOptions, ...(prefilter ? {prefilter} : {}), ...(logprobSupport ? {logprobSupport} : {})}})
    }

    return jobs
  },
  run: (job, context) => runShips(job.model, job.params, context),
  headline: (summary) => summary.heads.slice(0, 5).map((h) => `${formatHead(h)} ${h.mean_kl.toExponential(2)}`).join(', '),
}
