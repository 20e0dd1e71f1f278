/**
 * How a Sahara step scores its candidate heads (src/jobs/search.ts runs the steps).
 *
 * - `angles` (the paper): principal angles between the first r_main left singular vectors of the
 *   clean and ablated representation matrices (final-norm last-token hidden states,
 *   src/science/subspace.ts). The clean matrix is computed once, when the scorer starts.
 * - `kl`: the mean over queries of KL(clean || ablated) of the next-token distribution. Every
 *   request carries the clean spec first, as Ships' requests do: the KL's reference (and, with
 *   logprob_support K, the support set of each query's K likeliest clean tokens) comes from the
 *   same forward, and the rows are scored on Ships' KL threads.
 *
 * Scoring runs as work units (src/orchestration/work.ts): a unit scores one batch of candidate
 * heads over all prompts (one Forward per prompt chunk, then the scores here), on any sidecar of
 * the pool, several in flight per sidecar so one unit's scoring overlaps another's forwards; each
 * unit's scores are stored as it finishes and reused by a re-run (mid-step too).
 */
import {KlThreads, klThreadCount} from '../orchestration/kl-threads.js'
import type {Unit, Work} from '../orchestration/work.js'
import {type Head, formatHead} from '../science/heads.js'
import {type Matrix, type Representation, leftSingularVectors, matrix, representation, subspaceShift} from '../science/subspace.js'
import {type AblationSpec, type DescribeResponse, type ForwardResult, type SidecarClient, shapedTensor} from '../sidecar/client.js'
import {DEFAULT_ENGINE, type PipelineTrace, type StatsTotals, addStats, decodeFloat, emptyTotals, encodeFloat, engineRequest, outstandingTracker, pipelineGroupSize} from './engine.js'
import type {SearchParams} from './search.js'
import type {SearchSettings} from './search-steps.js'
import {METHOD_ENUM, TEMPLATE_ENUM} from './ships.js'

export const SCORES = ['angles', 'kl'] as const
export type ScoreKind = (typeof SCORES)[number]

/** Floats per Forward request (and per head group held in memory): 2^25 float32 = 128 MiB. */
export const SEARCH_MAX_FLOATS = 2 ** 25

/** What the scorers need of the search: fixed for its whole run. */
export interface ScoringSetup {
  params: SearchParams
  prompts: string[]
  facts: DescribeResponse
  work: Work
  maxFloats: number
  /** The step settings (their dtype and fingerprint go into every unit's key). */
  settings: SearchSettings
  /** The pre-filter, "atp:K", or null: in every unit's key. */
  prefilter: string | null
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

/**
 * Head groups and prompt chunks so one request holds at most maxFloats, and one group's matrices
 * too; `extraRows` more rows per prompt ride along in every request (score kl: the clean one).
 * Groups are cut smaller to pipeline (pipelineGroupSize) before the prompts per request are
 * chosen, so requests still fill the budget.
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
  const groupSize = pipelineGroupSize(nHeads, Math.max(1, Math.min(nHeads, Math.floor(maxFloats / perHead) - extraRows)))
  const promptsPerRequest = Math.max(1, Math.min(nPrompts, Math.floor(maxFloats / ((groupSize + extraRows) * floatsPerRow))))
  return {groupSize, promptsPerRequest}
}

/** One Forward of a unit: its first prompt's index, its prompts, the result. */
interface UnitResult {
  start: number
  part: string[]
  result: ForwardResult
}

/** Scores one unit's batch of heads from its Forward results, taken in prompt order. */
interface UnitScoring {
  add(unit: UnitResult, endpoint: string): void | Promise<void>
  scores(): number[]
}

/** Scores candidate heads on the sidecars of `setup.work`; counts its requests and times them. */
export abstract class Scorer {
  requests = 0
  /** Time waited for Forward results (requests are pipelined). */
  forwardMs = 0
  scoreMs = 0
  readonly totals: StatsTotals = emptyTotals()
  readonly trace: PipelineTrace = {idleMs: 0}
  private readonly tracked = outstandingTracker(this.trace)

  protected constructor(protected readonly setup: ScoringSetup) {}

  /** Scores for these candidate heads, each ablated together with `group`. */
  abstract score(group: Head[], candidates: Head[]): Promise<number[]>

  /** Frees what the scorer holds. */
  async close(): Promise<void> {}

  protected spec(group: Head[]): AblationSpec {
    return {heads: group, method: METHOD_ENUM[this.setup.params.method], eps: this.setup.params.eps}
  }

  /** One Forward on `sidecar` with this job's template and engine options; stats summed, the wait timed. */
  protected async forward(
    sidecar: SidecarClient,
    request: {prompts: string[]; specs: AblationSpec[]; returnHidden?: boolean; returnLogprobs?: boolean; logprobSupport?: number},
  ): Promise<ForwardResult> {
    const {params} = this.setup
    const tf = performance.now()
    const result = await this.tracked(() => sidecar.forward({...request, template: TEMPLATE_ENUM[params.template], ...engineRequest(params.engineOptions ?? DEFAULT_ENGINE)}))
    this.forwardMs += performance.now() - tf
    this.requests++
    addStats(this.totals, result.stats)
    return result
  }

  /**
   * Score `candidates` (each ablated with `group`) in units of `groupSize` heads. A unit's
   * Forwards run one after another; `begin(batch)` makes what takes each one's result as it
   * arrives (scored while the next is computed, then given back) and yields the batch's scores,
   * so a unit holds at most two results whatever the number of prompts. `cleanFirst`: every
   * request's first spec is the clean model.
   */
  protected async scoreInUnits(
    group: Head[],
    candidates: Head[],
    plan: {groupSize: number; promptsPerRequest: number},
    request: {returnHidden?: boolean; returnLogprobs?: boolean; logprobSupport?: number; cleanFirst?: boolean},
    begin: (batch: Head[]) => UnitScoring,
  ): Promise<number[]> {
    const {params, prompts, settings, prefilter, work} = this.setup
    const support = params.logprobSupport ?? 0
    const {cleanFirst, ...returned} = request
    const batches: Head[][] = []
    for (let i = 0; i < candidates.length; i += plan.groupSize) batches.push(candidates.slice(i, i + plan.groupSize))
    const units: Unit<(number | string)[]>[] = batches.map((batch) => ({
      id: `group [${group.map(formatHead).join(',')}] + ${formatHead(batch[0])}-${formatHead(batch.at(-1)!)}`,
      key: {
        score: params.score,
        group: group.map(formatHead),
        batch: batch.map(formatHead),
        engine: (params.engineOptions ?? DEFAULT_ENGINE).engine,
        prefilter,
        dtype: settings.dtype,
        fingerprint: settings.model_fingerprint,
        ...(cleanFirst ? {clean: 'same-forward'} : {}), // units scored against a separate clean pass are not mixed in
        ...(support > 0 ? {logprob_support: support} : {}),
      },
      run: async (sidecar) => {
        const scoring = begin(batch)
        const specs = [...(cleanFirst ? [this.spec([])] : []), ...batch.map((h) => this.spec([...group, h]))]
        let scored: Promise<void> = Promise.resolve()
        for (let start = 0; start < prompts.length; start += plan.promptsPerRequest) {
          const part = prompts.slice(start, start + plan.promptsPerRequest)
          const result = await this.forward(sidecar, {prompts: part, specs, ...returned})
          await scored
          scored = this.timedScore(async () => {
            await scoring.add({start, part, result}, sidecar.endpoint)
            sidecar.recycle(result)
          })
          scored.catch(() => {}) // awaited after the next Forward; until then a failure must not count as unhandled
        }

        await scored
        return scoring.scores().map(encodeFloat)
      },
    }))
    return (await work.map(units)).flat().map(decodeFloat)
  }

  private async timedScore(score: () => Promise<void>): Promise<void> {
    const ts = performance.now()
    try {
      await score()
    } finally {
      this.scoreMs += performance.now() - ts
    }
  }
}

/** Score angles: the subspace shift of the representation matrix. */
export class AnglesScorer extends Scorer {
  private base!: Representation
  /** How the clean matrix looks (summary.json's clean_representation). */
  cleanFacts!: CleanRepresentationFacts

  /** Computes the clean representation (and refuses an r_main above its rank) before any scoring. */
  static async start(setup: ScoringSetup): Promise<AnglesScorer> {
    const scorer = new AnglesScorer(setup)
    const clean = matrix(setup.prompts.length, setup.facts.hiddenSize, await scorer.cleanHidden())
    const options = scorer.options()
    scorer.base = representation(clean, options)
    subspaceShift(scorer.base, scorer.base, options) // refuses r_main above the clean matrix's rank
    scorer.cleanFacts = cleanFacts(clean)
    return scorer
  }

  async score(group: Head[], candidates: Head[]): Promise<number[]> {
    const {prompts, facts, maxFloats} = this.setup
    const N = prompts.length
    const d = facts.hiddenSize
    const options = this.options()
    const plan = planSearch(candidates.length, N, d, maxFloats, true)
    return this.scoreInUnits(group, candidates, plan, {returnHidden: true}, (batch) => {
      const rows = new Float32Array(N * batch.length * d) // [N, heads of the batch, d]
      return {
        add({start, part, result}, endpoint) {
          rows.set(shapedTensor(result, 'hidden', [part.length, batch.length, d], `Forward on ${endpoint}`).data, start * batch.length * d)
        },
        scores: () =>
          batch.map((_, j) => {
            const m = matrix(N, d)
            for (let i = 0; i < N; i++) for (let k = 0; k < d; k++) m.data[i * d + k] = rows[(i * batch.length + j) * d + k]
            return subspaceShift(this.base, representation(m, options), options).score
          }),
      }
    })
  }

  private options() {
    const {rMain, centre, angleSum} = this.setup.params
    return {rMain, centre, angleSum}
  }

  /** The clean model's representation rows, [N, hidden], float32: computed, not stored. */
  private async cleanHidden(): Promise<Float32Array> {
    const {prompts, facts, maxFloats, work} = this.setup
    const N = prompts.length
    const width = facts.hiddenSize
    const out = new Float32Array(N * width)
    const chunk = Math.max(1, Math.min(N, Math.floor(maxFloats / width)))
    const starts = Array.from({length: Math.ceil(N / chunk)}, (_, r) => r * chunk)
    await work.pool.run(
      starts.map((start) => async (sidecar: SidecarClient) => {
        const part = prompts.slice(start, start + chunk)
        const result = await this.forward(sidecar, {prompts: part, specs: [this.spec([])], returnHidden: true})
        out.set(shapedTensor(result, 'hidden', [part.length, 1, width], `Forward on ${sidecar.endpoint}`).data, start * width)
        sidecar.recycle(result)
      }),
    )
    return out
  }
}

/** Score kl: the mean KL over queries, against the clean row of the same forward. */
export class KlScorer extends Scorer {
  private readonly klThreads: KlThreads

  constructor(setup: ScoringSetup) {
    super(setup)
    this.klThreads = KlThreads.start(klThreadCount(setup.facts.device))
  }

  async score(group: Head[], candidates: Head[]): Promise<number[]> {
    const {params, prompts, facts, maxFloats} = this.setup
    const N = prompts.length
    const support = params.logprobSupport ?? 0
    const width = support > 0 ? support + 1 : facts.vocabSize // log-probs per row, as sent and scored
    const options = {smoothing: params.smoothing}
    const plan = planSearch(candidates.length, N, width, maxFloats, false, 1)
    const request = {returnLogprobs: true, logprobSupport: support, cleanFirst: true}
    return this.scoreInUnits(group, candidates, plan, request, (batch) => {
      const sums = new Float64Array(batch.length) // the KL summed over queries, per head of the batch
      return {
        add: async ({part, result}, endpoint) => {
          const logprobs = shapedTensor(result, 'logprobs', [part.length, batch.length + 1, width], `Forward on ${endpoint}`)
          if (!(logprobs.data instanceof Float32Array)) throw new Error(`Forward on ${endpoint}: tensor logprobs must be float32`)
          const kl = await this.klThreads.score(logprobs.data, part.length, batch.length + 1, width, options) // [query, head of the batch]
          for (let q = 0; q < part.length; q++) for (let j = 0; j < batch.length; j++) sums[j] += kl[q * batch.length + j]
        },
        scores: () => Array.from(sums, (x) => x / N),
      }
    })
  }

  override close(): Promise<void> {
    return this.klThreads.close()
  }
}

export async function startScorer(setup: ScoringSetup): Promise<Scorer> {
  return setup.params.score === 'angles' ? AnglesScorer.start(setup) : new KlScorer(setup)
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
