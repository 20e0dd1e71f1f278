/**
 * Sahara (METHOD.md, paper Algorithm 1): the greedy search for a group of safety heads.
 *
 *   G = {}; base = representation of the clean model (computed once)
 *   for step in 1..S: score every head h not in G by dataset-level Ships(base, G ∪ {h} ablated);
 *                     G = G ∪ {argmax} (ties: lowest (layer, head))
 *
 * Scores (`score`, src/jobs/search-scoring.ts): `angles` (default, the paper: principal angles
 * between the leading left singular vectors of the clean and ablated representation matrices;
 * options r_main, centre, angle_sum) or `kl` (the query-level Ships, Eq. 9, averaged over the
 * dataset; option logprob_support).
 *
 * Storage, in OUT/: search.jsonl, one line per finished step, written and fsynced when the step
 * ends — `{step, group_before, scores: [{layer, head, score_deg | mean_kl}], chosen, settings, ...}`
 * with every head not in the group — and summary.json (rewritten after every step; also the
 * job's result). A run resumes from the stored steps when their settings equal this run's
 * (src/jobs/search-steps.ts); otherwise it refuses, naming the first differing field, unless
 * `restart`.
 */
import {mkdirSync} from 'node:fs'
import {resolve} from 'node:path'

import type {Fields} from '../config/fields.js'
import type {Dataset} from '../data/datasets.js'
import {ModelError, type ResolvedModel, localGeometry} from '../models.js'
import {type Head, allHeads, formatHead} from '../science/heads.js'
import {DEFAULT_SMOOTHING} from '../science/kl.js'
import {ANGLE_SUMS, type AngleSum} from '../science/subspace.js'
import {appendLineDurable, resultJson, writeFileAtomic} from '../orchestration/files.js'
import {singleClientWork} from '../orchestration/work.js'
import {type SidecarInfo, dtypeName, sidecarInfo} from '../sidecar/client.js'
import {
  DEFAULT_ENGINE,
  ENGINE_KEYS,
  type EngineName,
  type EngineOptions,
  type Prefilter,
  type PrefilterSummary,
  type StatsTotals,
  closeTrace,
  emptyTotals,
  formatPrefilter,
  parseEngineFields,
  roundedTotals,
  runPrefilter,
} from './engine.js'
import {matrixCells, parseMatrix} from './matrix.js'
import type {JobKind, JobSpec, ParseContext, RunContext} from './registry.js'
import {AnglesScorer, type CleanRepresentationFacts, SCORES, SEARCH_MAX_FLOATS, type ScoreKind, type Scorer, startScorer} from './search-scoring.js'
import {type SearchChoices, type StepLine, type StepResult, SearchStateError, chooseHead, promptsOf, sameHead, searchSettings, stepResult, storedSteps} from './search-steps.js'
import {METHOD_ENUM, type Method, TEMPLATE_ENUM, type Template, formatEps} from './ships.js'

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

export interface SearchSummary extends SearchChoices {
  kind: 'search'
  model: string
  model_source: string
  family: string
  num_layers: number
  num_heads: number
  hidden_size: number
  dataset_path: string
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

const seconds = (ms: number) => Math.round(ms) / 1000

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
  const N = prompts.length

  log(
    `search: ${model.name} (${facts.family}, L=${geometry.numLayers} H=${geometry.numHeads} d=${facts.hiddenSize}) on ${params.dataset.name} (${N} prompts), ` +
      `${params.method} eps=${formatEps(params.eps)}, score ${describeScore(params)}, ${params.steps} steps`,
  )
  if (stored.length > 0) log(`resuming after step ${stored.length} (stored in ${jsonlPath}): group ${stored.map((s) => formatHead(s.chosen)).join(', ')}`)

  let baseMs = 0
  let scorer: Scorer | undefined
  let pool = heads // the heads a step may choose from
  let prefilter: PrefilterSummary | undefined
  /** The pre-filter (its Attribute call), then the scorer (the clean pass of score angles): once, when a step must be computed. */
  const prepare = async (): Promise<Scorer> => {
    const tb = performance.now()
    const work = context.work ?? singleClientWork(client, {name: 'search', key: ''})
    if (params.prefilter) {
      const request = {prompts, template: TEMPLATE_ENUM[params.template], method: METHOD_ENUM[params.method], eps: params.eps}
      const kept = await runPrefilter(work.pool, params.prefilter, request, geometry)
      pool = kept.heads
      prefilter = kept.summary
      // Resuming: step 1's table lists the pool the stored steps chose from. Attribution on another
      // host (or GPU noise) may rank the K-th head differently; the stored steps' pool is kept.
      const storedPool = lines[0]?.scores.map(({layer, head}) => ({layer, head}))
      if (storedPool && !(storedPool.length === pool.length && storedPool.every((h) => pool.some((p) => sameHead(h, p))))) {
        log(`  warning: the pre-filter now keeps ${pool.map(formatHead).join(', ')}; the stored steps chose from ${storedPool.map(formatHead).join(', ')}, which the search keeps`)
        pool = storedPool
        kept.summary.scored = pool.map(formatHead)
      }

      log(`pre-filter ${kept.summary.prefilter}: steps choose from ${pool.map(formatHead).join(', ')}`)
    }

    const started = await startScorer({params, prompts, facts, work, maxFloats: params.maxFloats ?? SEARCH_MAX_FLOATS, settings, prefilter: prefilter?.prefilter ?? null})
    baseMs = performance.now() - tb
    return started
  }

  /** The pre-filter and the clean representation: this run's, else those the stored steps kept. */
  const onceFacts = (): Pick<SearchSummary, 'prefilter' | 'clean_representation'> => {
    const cleanFacts = scorer instanceof AnglesScorer ? scorer.cleanFacts : lines.findLast((l) => l.clean_representation)?.clean_representation
    const kept = prefilter ?? lines.findLast((l) => l.prefilter)?.prefilter
    return {...(kept ? {prefilter: kept} : {}), ...(cleanFacts ? {clean_representation: cleanFacts} : {})}
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
    ...onceFacts(),
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
        scores: entries.map((e) => ({layer: e.head.layer, head: e.head.head, [key]: e.score})), // resultJson writes a non-finite one as its string
        chosen: best.head,
        settings,
        requests: scorer.requests - requestsBefore,
        seconds: seconds(performance.now() - ts),
        finished_at: new Date().toISOString(),
        ...(prefilter ? {prefilter} : {}),
        ...(scorer instanceof AnglesScorer ? {clean_representation: scorer.cleanFacts} : {}),
      }
      appendLineDurable(jsonlPath, resultJson(line))
      lines.push(line)
      computed.push(step)
      const result = stepResult(line, params.score)
      log(
        `step ${step}: ${formatHead(best.head)} (${formatScore(result.score, params.score)}` +
          `${result.runner_up ? `; next ${formatHead(result.runner_up)} ${formatScore(result.runner_up.score, params.score)}` : ''}), ` +
          `${line.requests} requests, ${line.seconds} s`,
      )
      writeFileAtomic(summaryPath, `${resultJson(summarise(), 2)}\n`)
      context.progress?.(step, params.steps, `step ${step} chose ${formatHead(best.head)}`)
    }
  } finally {
    await scorer?.close() // the KL threads; a failed step leaves none behind
  }

  const summary = summarise()
  writeFileAtomic(summaryPath, `${resultJson(summary, 2)}\n`)
  return summary
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

