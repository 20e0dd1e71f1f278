/**
 * Sahara (METHOD.md, paper Algorithm 1): the greedy search for a group of safety heads.
 *
 *   G = {}; base = representation of the clean model (computed once)
 *   for step in 1..S: score every head h not in G by dataset-level Ships(base, G ∪ {h} ablated);
 *                     G = G ∪ {argmax} (ties: lowest (layer, head))
 *
 * Scores (`score`):
 * - `angles` (default, the paper): principal angles between the first r_main left singular vectors
 *   of the clean and ablated representation matrices (final-norm last-token hidden states),
 *   src/science/subspace.ts; options r_main, centre, angle_sum. Forward asks for hidden states only.
 * - `kl`: the mean over queries of KL(clean || ablated) of the next-token distribution — the
 *   query-level Ships (Eq. 9) averaged over the dataset; Forward asks for log-probs only, with the
 *   clean spec first in every request (the rows laid out as ships lays them, scored by the same KL
 *   threads). With `logprob_support` K the KL is over each query's K likeliest clean tokens and the
 *   rest of the mass (a lower bound, as in ships), the support taken from that clean row.
 *
 * Storage, in OUT/: search.jsonl, one line per finished step, written and fsynced when the step
 * ends — `{step, group_before, scores: [{layer, head, score_deg | mean_kl}], chosen, settings, ...}`
 * with every head not in the group — and summary.json (rewritten after every step; also the
 * job's result). A run resumes from the stored steps when their settings (model, dataset and its
 * prompts, method, eps, template, score and its options) equal this run's; otherwise it refuses,
 * naming the first differing field, unless `restart`. A torn last line (a crash mid-write) is
 * dropped with a warning; any other bad line is an error.
 */
import {existsSync, mkdirSync, readFileSync, renameSync, truncateSync, writeFileSync} from 'node:fs'
import {createHash} from 'node:crypto'
import {resolve} from 'node:path'

import type {Fields} from '../config/fields.js'
import type {Dataset} from '../data/datasets.js'
import {ModelError, type ResolvedModel, localGeometry} from '../models.js'
import {type Head, allHeads, formatHead} from '../science/heads.js'
import {DEFAULT_SMOOTHING} from '../science/kl.js'
import {ANGLE_SUMS, type AngleSum, type Matrix, type Representation, leftSingularVectors, matrix, representation, subspaceShift} from '../science/subspace.js'
import {appendLineDurable, writeFileAtomic} from '../orchestration/files.js'
import {type Unit, singleClientWork} from '../orchestration/work.js'
import {type AblationSpec, type ForwardResult, type SidecarClient, type SidecarInfo, dtypeName, sidecarInfo} from '../sidecar/client.js'
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
  formatPrefilter,
  outstandingTracker,
  parseEngineFields,
  pipelineGroupSize,
  prefilterHeads,
  prefilterSummary,
  roundedTotals,
} from './engine.js'
import {KlThreads, klThreadCount} from '../orchestration/kl-threads.js'
import {matrixCells, parseMatrix} from './matrix.js'
import type {JobKind, JobSpec, ParseContext, RunContext} from './registry.js'
import {METHOD_ENUM, type Method, TEMPLATE_ENUM, type Template, formatEps} from './ships.js'

export const SCORES = ['angles', 'kl'] as const
export type ScoreKind = (typeof SCORES)[number]

/** Floats per Forward request (and per head group held in memory): 2^25 float32 = 128 MiB. */
export const SEARCH_MAX_FLOATS = 2 ** 25

export interface SearchParams {
  dataset: Dataset
  method: Method
  eps: number
  template: Template
  /** Search size S: heads in the final group. */
  steps: number
  score: ScoreKind
  rMain: number
  centre: boolean
  angleSum: AngleSum
  /** KL smoothing (score kl), as in ships. */
  smoothing: number
  /** Score kl: K > 0 scores the KL over each query's K likeliest clean tokens and the rest (a lower
   * bound, ForwardRequest.logprob_support); 0 or absent: every token. */
  logprobSupport?: number
  limit?: number
  /** Discard stored steps instead of resuming. */
  restart?: boolean
  /** Stored steps made with other settings: refuse (the command: the user chooses --out or --restart),
   * or move them aside to search.jsonl.superseded-<time> and search anew (a sweep whose job changed). */
  settingsChanged?: 'refuse' | 'set-aside'
  maxFloats?: number
  /** Engine and memory budget sent with every Forward (default fast, auto). */
  engineOptions?: EngineOptions
  /** Rank every head once, on the clean model, by attribution; every step scores only the top K not yet chosen. */
  prefilter?: Prefilter
}

/** What stored steps must agree on to be resumed. Irrelevant options are null. */
export interface SearchSettings {
  model: string
  dataset: string
  dataset_sha256: string
  n_queries: number
  method: Method
  eps: number
  template: Template
  score: ScoreKind
  r_main: number | null
  centre: boolean | null
  angle_sum: AngleSum | null
  smoothing: number | null
  /** Score kl over a support set: K; null for every token (and in steps stored before it existed). */
  logprob_support: number | null
  /** "atp:K" or null (steps stored before pre-filters existed read as null). */
  prefilter: string | null
  /** The loaded model's dtype and fingerprint (weights, config, tokenizer), from Describe; undefined
   * (not compared) where no sidecar has been asked yet (precheckStoredSteps). */
  dtype?: string
  model_fingerprint?: string
}

export interface ScoreEntry {
  layer: number
  head: number
  score_deg?: number
  mean_kl?: number
}

export interface StepLine {
  step: number
  group_before: Head[]
  scores: ScoreEntry[]
  chosen: Head
  settings: SearchSettings
  requests: number
  seconds: number
  finished_at: string
}

export interface StepResult {
  step: number
  head: Head
  /** The value maximised: score_deg (angles) or mean_kl (kl). */
  score: number
  score_deg?: number
  mean_kl?: number
  runner_up: (Head & {score: number}) | null
}

export interface SearchSummary {
  kind: 'search'
  model: string
  model_source: string
  family: string
  num_layers: number
  num_heads: number
  hidden_size: number
  dataset: string
  dataset_path: string
  n_queries: number
  method: Method
  eps: number
  template: Template
  score: ScoreKind
  r_main: number | null
  centre: boolean | null
  angle_sum: AngleSum | null
  smoothing: number | null
  /** Score kl over each query's K likeliest clean tokens and the rest: K (a lower bound); null: every token. */
  logprob_support: number | null
  /** The group found, in the order chosen. */
  group: Head[]
  steps: StepResult[]
  /** Steps read back from OUT/search.jsonl, and those computed by this run. */
  resumed_steps: number
  computed_steps: number[]
  /** The clean representation matrix (score angles): how much of it the mean row explains. */
  clean_representation?: CleanRepresentationFacts
  /** Present with a pre-filter: the heads every step chose from (the only ones scored). */
  prefilter?: PrefilterSummary
  sidecar: SidecarInfo
  requests: number
  timings: {
    describe_s: number
    /** The clean pass (and the pre-filter's Attribute call). */
    base_s: number
    /** Time waited for Forward results (requests are pipelined, so sidecar work overlaps the scoring). */
    forward_s: number
    score_s: number
    /** Time the sidecar had no request of this run to work on (the CLI was the bottleneck). */
    sidecar_idle_s: number
    total_s: number
    engine: EngineName
    memory_budget_gib: number | 'auto'
    /** The sidecar's ForwardStats, summed over this run's Forward requests (clean pass included). */
    sidecar_stats: StatsTotals
  }
}

export interface CleanRepresentationFacts {
  /** Leading singular values of M (raw) and of M with its column mean removed. */
  singular_values: number[]
  singular_values_centred: number[]
  /** N‖mean row‖² / ‖M‖_F²: the share of M's energy in the mean activation. */
  mean_energy_share: number
  /** |cos| between the first left singular vector and the uniform vector 1/√N. */
  u1_uniform_cosine: number
}

export class SearchStateError extends Error {
  override name = 'SearchStateError'
}

/** Stored steps were made with other settings; `detail` names the first differing field. */
export class SearchSettingsChanged extends SearchStateError {
  override name = 'SearchSettingsChanged'

  constructor(readonly detail: string) {
    super(`${detail}: use another --out, or --restart to discard the stored steps`)
  }
}

const seconds = (ms: number) => Math.round(ms) / 1000

export function datasetDigest(prompts: readonly string[]): string {
  return createHash('sha256').update(JSON.stringify(prompts)).digest('hex')
}

export function searchSettings(
  modelSource: string,
  params: SearchParams,
  prompts: readonly string[],
  loaded?: {dtype: string; fingerprint: string},
): SearchSettings {
  const angles = params.score === 'angles'
  return {
    ...(loaded ? {dtype: loaded.dtype, model_fingerprint: loaded.fingerprint} : {}),
    model: modelSource,
    dataset: params.dataset.name,
    dataset_sha256: datasetDigest(prompts),
    n_queries: prompts.length,
    method: params.method,
    eps: params.eps,
    template: params.template,
    score: params.score,
    r_main: angles ? params.rMain : null,
    centre: angles ? params.centre : null,
    angle_sum: angles ? params.angleSum : null,
    smoothing: angles ? null : params.smoothing,
    logprob_support: !angles && (params.logprobSupport ?? 0) > 0 ? (params.logprobSupport as number) : null,
    prefilter: params.prefilter ? formatPrefilter(params.prefilter) : null,
  }
}

export function promptsOf(params: SearchParams): string[] {
  return params.limit === undefined ? params.dataset.prompts : params.dataset.prompts.slice(0, params.limit)
}

const sameHead = (a: Head, b: Head) => a.layer === b.layer && a.head === b.head

/**
 * Read OUT/search.jsonl: the valid steps, in order. Checks every line's settings against
 * `settings` (first differing field named), step numbering, and that each group_before is the
 * previous steps' choices. A torn last line is dropped (file truncated to the good prefix) with a
 * warning. With `restart` the file is emptied instead.
 */
export function loadStoredSteps(path: string, settings: SearchSettings, options: {restart?: boolean; log?: (m: string) => void} = {}): StepLine[] {
  const log = options.log ?? (() => {})
  if (!existsSync(path)) return []
  if (options.restart) {
    writeFileSync(path, '')
    return []
  }

  const text = readFileSync(path, 'utf8')
  if (text === '') return []
  const parts = text.split('\n')
  const trailing = parts.pop() as string // '' when the file ends with a newline
  const steps: StepLine[] = []
  let goodBytes = 0
  let torn: string | undefined = trailing === '' ? undefined : `an unterminated last line (${trailing.length} characters)`
  for (const [i, raw] of parts.entries()) {
    let line: StepLine
    try {
      line = JSON.parse(raw) as StepLine
      if (typeof line !== 'object' || line === null || !Array.isArray(line.scores) || !line.chosen || !line.settings) throw new Error('not a step record')
    } catch (error) {
      if (i === parts.length - 1 && trailing === '') {
        torn = `an unreadable last line (${(error as Error).message})`
        break
      }

      throw new SearchStateError(`${path}: line ${i + 1} is not a valid step record (${(error as Error).message}); fix or remove the file, or use --restart`)
    }

    for (const key of Object.keys(settings) as (keyof SearchSettings)[]) {
      if (settings[key] !== undefined && (line.settings[key] ?? null) !== settings[key]) {
        const stored = line.settings[key] === undefined ? `no ${key} (stored by an earlier version)` : `${key} = ${JSON.stringify(line.settings[key])}`
        throw new SearchSettingsChanged(`${path} holds steps made with ${stored}, but this run has ${key} = ${JSON.stringify(settings[key])}`)
      }
    }

    if (line.step !== i + 1) throw new SearchStateError(`${path}: line ${i + 1} is step ${line.step}, expected step ${i + 1}; use --restart`)
    const expected = steps.map((s) => s.chosen)
    if (line.group_before.length !== expected.length || !line.group_before.every((h, k) => sameHead(h, expected[k]))) {
      throw new SearchStateError(`${path}: step ${line.step}'s group_before does not match the heads chosen before it; use --restart`)
    }

    steps.push(line)
    goodBytes += Buffer.byteLength(raw, 'utf8') + 1
  }

  if (torn !== undefined) {
    log(`warning: ${path}: ignoring ${torn} (a step interrupted while being written); it will be recomputed`)
    truncateSync(path, goodBytes)
  }

  return steps
}

/** argmax; ties (exactly equal scores) go to the lowest (layer, head). NaN never wins. */
export function chooseHead(entries: {head: Head; score: number}[]): {best: {head: Head; score: number}; runnerUp: {head: Head; score: number} | null} {
  const sorted = [...entries].sort((a, b) => {
    const sa = Number.isNaN(a.score) ? Number.NEGATIVE_INFINITY : a.score
    const sb = Number.isNaN(b.score) ? Number.NEGATIVE_INFINITY : b.score
    if (sa !== sb) return sb > sa ? 1 : -1
    return a.head.layer - b.head.layer || a.head.head - b.head.head
  })
  if (sorted.length === 0) throw new Error('chooseHead: no candidates')
  return {best: sorted[0], runnerUp: sorted[1] ?? null}
}

/**
 * Head groups and prompt chunks so one request holds at most maxFloats, and one group's matrices
 * too; `extraRows` more rows per prompt ride along in every request (score kl: the clean one).
 */
export function planSearch(
  nHeads: number,
  nPrompts: number,
  floatsPerRow: number,
  maxFloats: number,
  holdAllPrompts: boolean,
  extraRows = 0,
): {groupSize: number; promptsPerRequest: number} {
  const perHead = holdAllPrompts ? nPrompts * floatsPerRow : floatsPerRow
  const groupSize = Math.max(1, Math.min(nHeads, Math.floor(maxFloats / perHead) - extraRows))
  const promptsPerRequest = Math.max(1, Math.min(nPrompts, Math.floor(maxFloats / ((groupSize + extraRows) * floatsPerRow))))
  return {groupSize, promptsPerRequest}
}

interface Scorer {
  /** Scores for these candidate heads, each ablated together with `group`. */
  score(group: Head[], candidates: Head[]): Promise<number[]>
  requests: number
  /** Time waited for Forward results (requests are pipelined). */
  forwardMs: number
  scoreMs: number
  totals: StatsTotals
  trace: PipelineTrace
  /** Frees what the scorer holds (the KL threads). */
  close(): Promise<void>
}

function checkTensor(endpoint: string, name: string, tensor: {shape: number[]} | undefined, expected: number[]): void {
  if (!tensor || tensor.shape.join(',') !== expected.join(',')) {
    throw new Error(`Forward on ${endpoint}: expected tensor ${name} of shape [${expected.join(', ')}], got ${tensor ? `[${tensor.shape.join(', ')}]` : 'none'}`)
  }
}

function cleanFacts(m: Matrix): CleanRepresentationFacts {
  const k = Math.min(8, m.rows)
  const raw = leftSingularVectors(m, k)
  const centred = leftSingularVectors(m, k, {centre: true})
  let total = 0
  for (const x of m.data) total += x * x
  let meanNorm2 = 0
  for (let j = 0; j < m.cols; j++) {
    let s = 0
    for (let i = 0; i < m.rows; i++) s += m.data[i * m.cols + j]
    meanNorm2 += (s / m.rows) ** 2
  }

  let cos = 0
  for (let i = 0; i < m.rows; i++) cos += raw.vectors.data[i * k] / Math.sqrt(m.rows)
  return {
    singular_values: Array.from(raw.singularValues),
    singular_values_centred: Array.from(centred.singularValues),
    mean_energy_share: total > 0 ? (m.rows * meanNorm2) / total : 0,
    u1_uniform_cosine: Math.abs(cos),
  }
}

export async function runSearch(model: ResolvedModel, params: SearchParams, context: RunContext): Promise<SearchSummary> {
  const {client, outDir, log} = context
  const t0 = performance.now()
  const facts = await client.describe()
  const tDescribe = performance.now() - t0
  const geometry = {numLayers: facts.numLayers, numHeads: facts.numHeads}
  const heads = allHeads(geometry)
  if (heads.length === 0 || facts.hiddenSize === 0 || facts.vocabSize === 0) {
    throw new Error(`Describe on ${client.endpoint} reported L=${facts.numLayers}, H=${facts.numHeads}, hidden=${facts.hiddenSize}, vocab=${facts.vocabSize}: nothing to search`)
  }

  if (params.steps > heads.length) throw new SearchStateError(`--steps ${params.steps} exceeds the model's ${heads.length} heads`)
  if (params.prefilter && params.steps > params.prefilter.k) {
    throw new SearchStateError(`--steps ${params.steps} exceeds the ${params.prefilter.k} heads the pre-filter ${formatPrefilter(params.prefilter)} keeps`)
  }

  if (params.prefilter && params.method === 'mean') throw new SearchStateError('the attribution pre-filter needs method ua or sc (mean ablation has no eps to differentiate)')
  const support = params.logprobSupport ?? 0
  if (support > 0 && params.score !== 'kl') throw new SearchStateError(`logprob_support ${support} applies to score kl only (score ${params.score} reads hidden states)`)
  if (support >= facts.vocabSize) throw new SearchStateError(`logprob_support ${support} is not below ${model.name}'s vocabulary size ${facts.vocabSize}; 0 scores every token`)
  const engineOptions = params.engineOptions ?? DEFAULT_ENGINE
  const prompts = promptsOf(params)
  if (prompts.length === 0) throw new SearchStateError(`dataset ${params.dataset.name} has no prompts`)
  const modelSource = model.kind === 'remote' ? facts.model : model.source
  const settings = searchSettings(modelSource, params, prompts, {dtype: dtypeName(facts.dtype), fingerprint: facts.modelFingerprint})
  mkdirSync(outDir, {recursive: true})
  const jsonlPath = resolve(outDir, 'search.jsonl')
  const stored = storedSteps(jsonlPath, settings, params, log)
  const lines: StepLine[] = stored.slice(0, params.steps)
  const maxFloats = params.maxFloats ?? SEARCH_MAX_FLOATS
  const spec = (group: Head[]): AblationSpec => ({heads: group, method: METHOD_ENUM[params.method], eps: params.eps})
  const template = TEMPLATE_ENUM[params.template]
  const N = prompts.length

  log(
    `search: ${model.name} (${facts.family}, L=${geometry.numLayers} H=${geometry.numHeads} d=${facts.hiddenSize}) on ${params.dataset.name} (${N} prompts), ` +
      `${params.method} eps=${formatEps(params.eps)}, score ${describeScore(params)}, ${params.steps} steps`,
  )
  if (stored.length > 0) log(`resuming after step ${stored.length} (stored in ${jsonlPath}): group ${stored.map((s) => formatHead(s.chosen)).join(', ')}`)

  let baseMs = 0
  let cleanRepresentation: CleanRepresentationFacts | undefined
  let scorer: Scorer | undefined
  let pool = heads // the heads a step may choose from
  let prefilter: PrefilterSummary | undefined
  const prepare = async (): Promise<Scorer> => {
    const tb = performance.now()
    if (params.prefilter) {
      const result = await client.attribute({prompts, template, method: METHOD_ENUM[params.method], eps: params.eps})
      const attribution = result.tensors.get('attribution')
      checkTensor(client.endpoint, 'attribution', attribution, [N, geometry.numLayers, geometry.numHeads])
      const chosen = prefilterHeads(attribution!.data, N, geometry, params.prefilter.k)
      pool = chosen.heads
      prefilter = prefilterSummary(params.prefilter, pool, chosen.meanAbs, geometry, seconds(performance.now() - tb))
      log(`pre-filter ${prefilter.prefilter}: steps choose from ${pool.map(formatHead).join(', ')}`)
    }

    const s = params.score === 'angles' ? await anglesScorer() : await klScorer()
    baseMs = performance.now() - tb
    return s
  }

  // Scoring runs as work units (src/orchestration/work.ts): a unit scores one batch of candidate
  // heads over all prompts (one Forward per prompt chunk, then the scores here), on any sidecar of
  // the pool, several in flight per sidecar so one unit's scoring overlaps another's forwards;
  // each unit's scores are stored as it finishes and reused by a re-run (mid-step too).
  const work = context.work ?? singleClientWork(client, {name: 'search', key: ''})
  const trackers = new WeakMap<Scorer, <R>(call: () => Promise<R>) => Promise<R>>()
  /** One Forward on `sidecar` with this job's engine options; stats summed, the wait timed. */
  const forward = async (
    sidecar: SidecarClient,
    s: Scorer,
    request: {prompts: string[]; specs: AblationSpec[]; returnHidden?: boolean; returnLogprobs?: boolean; logprobSupport?: number},
  ): Promise<ForwardResult> => {
    if (!trackers.has(s)) trackers.set(s, outstandingTracker(s.trace))
    const tf = performance.now()
    const result = await trackers.get(s)!(() => sidecar.forward({...request, template, ...engineRequest(engineOptions)}))
    s.forwardMs += performance.now() - tf
    s.requests++
    addStats(s.totals, result.stats)
    return result
  }

  /** The clean model's representation rows, [N, width], float32: computed, not stored. */
  const cleanHidden = async (width: number, s: Scorer): Promise<Float32Array> => {
    const out = new Float32Array(N * width)
    const chunk = Math.max(1, Math.min(N, Math.floor(maxFloats / width)))
    const starts = Array.from({length: Math.ceil(N / chunk)}, (_, r) => r * chunk)
    await work.pool.run(
      starts.map((start) => async (sidecar: SidecarClient) => {
        const part = prompts.slice(start, start + chunk)
        const result = await forward(sidecar, s, {prompts: part, specs: [spec([])], returnHidden: true})
        const tensor = result.tensors.get('hidden')
        checkTensor(sidecar.endpoint, 'hidden', tensor, [part.length, 1, width])
        out.set(tensor!.data, start * width)
        sidecar.recycle(result)
      }),
    )
    return out
  }

  /**
   * Score `candidates` (each ablated with `group`) in units of `groupSize` heads; `scoreBatch`
   * turns one batch's Forward results, in prompt order, into one score per head. Log-prob requests
   * carry the clean spec first: the KL's reference, and the support set's, from the same forward.
   */
  const scoreInUnits = async (
    s: Scorer,
    group: Head[],
    candidates: Head[],
    plan: {groupSize: number; promptsPerRequest: number},
    returns: 'hidden' | 'logprobs',
    scoreBatch: (batch: Head[], results: {start: number; part: string[]; result: ForwardResult}[], sidecar: string) => number[] | Promise<number[]>,
  ): Promise<number[]> => {
    const batches: Head[][] = []
    for (let i = 0; i < candidates.length; i += plan.groupSize) batches.push(candidates.slice(i, i + plan.groupSize))
    const units: Unit<(number | string)[]>[] = batches.map((batch) => ({
      id: `group [${group.map(formatHead).join(',')}] + ${formatHead(batch[0])}-${formatHead(batch.at(-1)!)}`,
      key: {
        score: params.score,
        group: group.map(formatHead),
        batch: batch.map(formatHead),
        engine: engineOptions.engine,
        prefilter: prefilter?.prefilter ?? null,
        dtype: settings.dtype,
        fingerprint: settings.model_fingerprint,
        ...(support > 0 ? {logprob_support: support} : {}), // absent for every token: earlier stored units still match
      },
      async run(sidecar) {
        const results = []
        const specs = [...(returns === 'logprobs' ? [spec([])] : []), ...batch.map((h) => spec([...group, h]))]
        const returned = returns === 'hidden' ? {returnHidden: true} : {returnLogprobs: true, logprobSupport: support}
        for (let start = 0; start < N; start += plan.promptsPerRequest) {
          const part = prompts.slice(start, start + plan.promptsPerRequest)
          results.push({start, part, result: await forward(sidecar, s, {prompts: part, specs, ...returned})})
        }

        const ts = performance.now()
        const scores = await scoreBatch(batch, results, sidecar.endpoint)
        for (const {result} of results) sidecar.recycle(result)
        s.scoreMs += performance.now() - ts
        return scores.map(encodeFloat)
      },
    }))
    return (await work.map(units)).flat().map(decodeFloat)
  }

  const newScorer = (): Scorer => ({requests: 0, forwardMs: 0, scoreMs: 0, totals: emptyTotals(), trace: {idleMs: 0}, score: async () => [], close: async () => {}})

  const anglesScorer = async (): Promise<Scorer> => {
    const d = facts.hiddenSize
    const s = newScorer()
    const clean = matrix(N, d, await cleanHidden(d, s))
    const options = {rMain: params.rMain, centre: params.centre, angleSum: params.angleSum}
    const base: Representation = representation(clean, options)
    subspaceShift(base, base, options) // refuses r_main above the clean matrix's rank, before any scoring
    cleanRepresentation = cleanFacts(clean)
    s.score = async (group, candidates) => {
      const plan = planSearch(candidates.length, N, d, maxFloats, true)
      const groupSize = pipelineGroupSize(candidates.length, plan.groupSize)
      return scoreInUnits(s, group, candidates, {groupSize, promptsPerRequest: plan.promptsPerRequest}, 'hidden', (batch, results, endpoint) => {
        const rows = new Float32Array(N * batch.length * d) // [N, heads of the batch, d]
        for (const {start, part, result} of results) {
          const hidden = result.tensors.get('hidden')
          checkTensor(endpoint, 'hidden', hidden, [part.length, batch.length, d])
          rows.set(hidden!.data, start * batch.length * d)
        }

        return batch.map((_, j) => {
          const m = matrix(N, d)
          for (let i = 0; i < N; i++) for (let k = 0; k < d; k++) m.data[i * d + k] = rows[(i * batch.length + j) * d + k]
          return subspaceShift(base, representation(m, options), options).score
        })
      })
    }

    return s
  }

  const klScorer = async (): Promise<Scorer> => {
    const width = support > 0 ? support + 1 : facts.vocabSize // log-probs per row, as sent and scored
    const s = newScorer()
    const klThreads = KlThreads.start(klThreadCount(facts.device))
    s.close = () => klThreads.close()
    const options = {smoothing: params.smoothing}
    s.score = async (group, candidates) => {
      const plan = planSearch(candidates.length, N, width, maxFloats, false, 1)
      const groupSize = pipelineGroupSize(candidates.length, plan.groupSize)
      return scoreInUnits(s, group, candidates, {groupSize, promptsPerRequest: plan.promptsPerRequest}, 'logprobs', async (batch, results, endpoint) => {
        const sums = new Float64Array(batch.length)
        for (const {part, result} of results) {
          const logprobs = result.tensors.get('logprobs')
          checkTensor(endpoint, 'logprobs', logprobs, [part.length, batch.length + 1, width])
          if (!(logprobs!.data instanceof Float32Array)) throw new Error(`Forward on ${endpoint}: tensor logprobs must be float32`)
          const kl = await klThreads.score(logprobs!.data, part.length, batch.length + 1, width, options) // [query, head of the batch]
          for (let q = 0; q < part.length; q++) for (let j = 0; j < batch.length; j++) sums[j] += kl[q * batch.length + j]
        }

        return Array.from(sums, (x) => x / N)
      })
    }

    return s
  }

  const computed: number[] = []
  const summaryPath = resolve(outDir, 'summary.json')
  const summarise = (): SearchSummary => {
    if (scorer) closeTrace(scorer.trace) // the CLI's time since the last request counts as idle
    return summaryNow()
  }

  const summaryNow = (): SearchSummary => ({
    kind: 'search',
    model: model.name,
    model_source: modelSource,
    family: facts.family,
    num_layers: geometry.numLayers,
    num_heads: geometry.numHeads,
    hidden_size: facts.hiddenSize,
    dataset: params.dataset.name,
    dataset_path: params.dataset.path,
    n_queries: N,
    method: params.method,
    eps: params.eps,
    template: params.template,
    score: params.score,
    r_main: settings.r_main,
    centre: settings.centre,
    angle_sum: settings.angle_sum,
    smoothing: settings.smoothing,
    logprob_support: settings.logprob_support,
    group: lines.map((l) => ({layer: l.chosen.layer, head: l.chosen.head})),
    steps: lines.map((l) => stepResult(l, params.score)),
    resumed_steps: lines.length - computed.length,
    computed_steps: [...computed],
    ...(cleanRepresentation ? {clean_representation: cleanRepresentation} : {}),
    ...(prefilter ? {prefilter} : {}),
    sidecar: sidecarInfo(client.endpoint, facts),
    requests: scorer?.requests ?? 0,
    timings: {
      describe_s: seconds(tDescribe),
      base_s: seconds(baseMs),
      forward_s: seconds(scorer?.forwardMs ?? 0),
      score_s: seconds(scorer?.scoreMs ?? 0),
      sidecar_idle_s: seconds(scorer?.trace.idleMs ?? 0),
      total_s: seconds(performance.now() - t0),
      engine: engineOptions.engine,
      memory_budget_gib: engineOptions.memoryBudgetGib === 0 ? 'auto' : engineOptions.memoryBudgetGib,
      sidecar_stats: roundedTotals(scorer?.totals ?? emptyTotals()),
    },
  })

  try {
    for (let step = lines.length + 1; step <= params.steps; step++) {
      scorer ??= await prepare()
      const ts = performance.now()
      const requestsBefore = scorer.requests
      const group = lines.map((l) => l.chosen)
      const candidates = pool.filter((h) => !group.some((g) => sameHead(g, h)))
      log(`step ${step}/${params.steps}: scoring ${candidates.length} heads with ${group.length === 0 ? 'no group' : `group ${group.map(formatHead).join(', ')}`} ablated`)
      const values = await scorer.score(group, candidates)
      const entries = candidates.map((head, i) => ({head, score: values[i]}))
      const {best} = chooseHead(entries)
      const key = params.score === 'angles' ? 'score_deg' : 'mean_kl'
      const line: StepLine = {
        step,
        group_before: group,
        scores: entries.map((e) => ({layer: e.head.layer, head: e.head.head, [key]: e.score})),
        chosen: best.head,
        settings,
        requests: scorer.requests - requestsBefore,
        seconds: seconds(performance.now() - ts),
        finished_at: new Date().toISOString(),
      }
      appendLineDurable(jsonlPath, JSON.stringify(line))
      lines.push(line)
      computed.push(step)
      const result = stepResult(line, params.score)
      log(
        `step ${step}: ${formatHead(best.head)} (${formatScore(result.score, params.score)}` +
          `${result.runner_up ? `; next ${formatHead(result.runner_up)} ${formatScore(result.runner_up.score, params.score)}` : ''}), ` +
          `${line.requests} requests, ${line.seconds} s`,
      )
      writeFileAtomic(summaryPath, `${JSON.stringify(summarise(), null, 2)}\n`)
      context.progress?.(step, params.steps, `step ${step} chose ${formatHead(best.head)}`)
    }
  } finally {
    await scorer?.close() // the KL threads; a failed step leaves none behind
  }

  const summary = summarise()
  writeFileAtomic(summaryPath, `${JSON.stringify(summary, null, 2)}\n`)
  return summary
}

export function scoreOf(entry: ScoreEntry, kind: ScoreKind): number {
  return (kind === 'angles' ? entry.score_deg : entry.mean_kl) ?? Number.NaN
}

export function stepResult(line: StepLine, kind: ScoreKind): StepResult {
  const {best, runnerUp} = chooseHead(line.scores.map((e) => ({head: {layer: e.layer, head: e.head}, score: scoreOf(e, kind)})))
  return {
    step: line.step,
    head: {layer: line.chosen.layer, head: line.chosen.head},
    score: best.score,
    ...(kind === 'angles' ? {score_deg: best.score} : {mean_kl: best.score}),
    runner_up: runnerUp ? {...runnerUp.head, score: runnerUp.score} : null,
  }
}

export function formatScore(value: number, kind: ScoreKind): string {
  return kind === 'angles' ? `${value.toFixed(4)}°` : `mean KL ${value.toExponential(4)}`
}

export function describeScore(p: Pick<SearchParams, 'score' | 'rMain' | 'centre' | 'angleSum' | 'logprobSupport'>): string {
  if (p.score === 'kl') return `kl (mean KL over queries${p.logprobSupport ? `, over each one's ${p.logprobSupport} likeliest clean tokens + the rest` : ''})`
  return `angles (r_main=${p.rMain}${p.rMain > 1 ? ` ${p.angleSum}` : ''}${p.centre ? ', centred' : ''})`
}

// ---- the `search` job kind for sweeps -------------------------------------------------------

const OPTION_KEYS = ['matrix', 'steps', 'score', 'r_main', 'centre', 'angle_sum', 'smoothing', 'logprob_support', 'limit', ...ENGINE_KEYS] as const
/** YAML has no flag syntax: centring is `centre: none` (default) or `centre: mean`. */
const CENTRE_VALUES = ['none', 'mean'] as const

/** L and H from a local model's config.json; undefined where that does not tell (the run will). */
function knownGeometry(model: ResolvedModel): {numLayers: number; numHeads: number} | undefined {
  try {
    return localGeometry(model)
  } catch (error) {
    if (error instanceof ModelError) return undefined
    throw error
  }
}

export const searchKind: JobKind<SearchParams, SearchSummary> = {
  kind: 'search',
  description: 'Sahara: greedy search for the head group that most shifts the dataset representation (or mean KL)',
  keys: OPTION_KEYS,
  parse(fields: Fields, context: ParseContext): JobSpec<SearchParams>[] {
    const matrix = parseMatrix(fields, context, 'a search matrix')
    const steps = fields.number('steps', {default: 3, integer: true, min: 1}).value
    const score = fields.string('score', {default: 'angles', oneOf: SCORES}).value as ScoreKind
    const rMain = fields.number('r_main', {default: 1, integer: true, min: 1}).value
    const centre = fields.string('centre', {default: 'none', oneOf: CENTRE_VALUES}).value === 'mean'
    const angleSum = fields.string('angle_sum', {default: 'nested', oneOf: ANGLE_SUMS}).value as AngleSum
    const smoothing = fields.number('smoothing', {default: DEFAULT_SMOOTHING, min: 0}).value
    const logprobSupport = fields.number('logprob_support', {default: 0, integer: true, min: 0}).value
    if (logprobSupport > 0 && score !== 'kl') throw fields.error('logprob_support', `logprob_support applies to score kl only (score ${score} reads hidden states)`)
    const limit = fields.has('limit') ? fields.number('limit', {integer: true, min: 1}).value : undefined
    const {engineOptions, prefilter} = parseEngineFields(fields)
    if (prefilter && steps > prefilter.k) throw fields.error('prefilter', `prefilter ${formatPrefilter(prefilter)} keeps ${prefilter.k} heads, fewer than steps = ${steps}`)
    const prefix = fields.has('name') ? fields.string('name').value : 'search'

    const jobs: JobSpec<SearchParams>[] = []
    for (const {model, dataset, method, eps, template, nameParts: parts} of matrixCells(matrix, prefix)) {
      if (score === 'kl') parts.push('kl', ...(logprobSupport ? [`support${logprobSupport}`] : []))
      else {
        if (rMain !== 1) parts.push(`r${rMain}`)
        if (rMain !== 1 && angleSum !== 'nested') parts.push(angleSum)
        if (centre) parts.push('centred')
      }

      if (prefilter && method === 'mean') throw fields.error('prefilter', 'the attribution pre-filter needs method ua or sc (mean ablation has no eps to differentiate)')
      if (prefilter) parts.push(`atp${prefilter.k}`)
      // What the model's config and the dataset already tell (a served model's heads are checked when it runs)
      const geometry = knownGeometry(model)
      if (geometry && steps > geometry.numLayers * geometry.numHeads) {
        throw fields.error('steps', `steps = ${steps} exceeds the ${geometry.numLayers * geometry.numHeads} heads of model ${model.name} (${geometry.numLayers} layers x ${geometry.numHeads})`)
      }

      const queries = Math.min(limit ?? Number.POSITIVE_INFINITY, dataset.prompts.length)
      const rank = centre ? queries - 1 : queries // of the representation matrix, at most
      if (score === 'angles' && rMain > rank) {
        throw fields.error('r_main', `r_main = ${rMain} exceeds the rank of the representation matrix of ${dataset.name}: at most ${rank} (${queries} prompts${centre ? ', centred' : ''})`)
      }
      jobs.push({
        kind: 'search',
        name: parts.join('-'),
        model,
        params: {dataset, method, eps, template, steps, score, rMain, centre, angleSum, smoothing, limit, engineOptions, ...(prefilter ? {prefilter} : {}), ...(logprobSupport ? {logprobSupport} : {})},
      })
    }

    return jobs
  },
  run: (job, context) => runSearch(job.model, {...job.params, settingsChanged: 'set-aside'}, context),
  headline: (summary) => `group ${summary.group.map(formatHead).join(', ')} (score ${summary.score}${summary.score === 'angles' ? `, r_main ${summary.r_main}${summary.centre ? ', centred' : ''}` : ''})`,
}

/** The stored steps to resume from; with settingsChanged 'set-aside', steps of other settings are
 * kept in a file beside it (never deleted) and the search starts anew. */
function storedSteps(path: string, settings: SearchSettings, params: SearchParams, log: (m: string) => void): StepLine[] {
  try {
    return loadStoredSteps(path, settings, {restart: params.restart, log})
  } catch (error) {
    if (!(error instanceof SearchSettingsChanged) || params.settingsChanged !== 'set-aside') throw error
    const aside = `${path}.superseded-${new Date().toISOString().replaceAll(':', '-')}`
    renameSync(path, aside)
    log(`  ${error.detail}; those steps are kept in ${aside}, and the search starts anew`)
    return []
  }
}

/** For callers without a sidecar yet (the command): refuse stored steps with other settings before starting one. */
export function precheckStoredSteps(outDir: string, modelSource: string, params: SearchParams, log: (m: string) => void): void {
  const path = resolve(outDir, 'search.jsonl')
  if (params.restart || !existsSync(path)) return
  loadStoredSteps(path, searchSettings(modelSource, params, promptsOf(params)), {log})
}

