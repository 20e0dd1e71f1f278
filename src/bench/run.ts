/**
 * `sahara bench`: on one sidecar, in one run, the naive and the fast engine on the same
 * workloads (a full Ships scan, one Sahara step), the dense-matmul peak of the same device,
 * and whether the two engines agree. Each engine first does a one-prompt warm-up scan (not
 * measured). Every run writes into its own folder under `outDir`.
 *
 * Rounds: on a shared machine the speed of the whole host drifts by tens of percent within a
 * minute, so one naive run and one fast run minutes apart give a noisy ratio. Each round runs
 * naive then fast back to back, per workload, and the ratio is taken within the round; the
 * reported figures are those of the round with the median ratio, with every round's listed.
 */
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'

import type {EngineName} from '../jobs/engine.js'
import {type SidecarClient, SidecarError, type SidecarInfo, dtypeName, sidecarInfo} from '../sidecar/client.js'
import {type Agreement, type StepAgreement, compareShips, compareStep} from './compare.js'
import {type Measurement, type ShipsRun, type StepRun, type Workload, measureSearchStep, measureShips} from './measure.js'

export const BENCH_ENGINES: readonly EngineName[] = ['naive', 'fast']

export interface Peak {
  flops_per_second: number
  dtype: string
  size: number
  device: string
  repeats: number
}

/** One round of one workload: naive then fast, back to back. */
export interface Round {
  naive_wall_s: number
  fast_wall_s: number
  fast_compute_s: number
  fast_overhead_share: number
  /** naive wall / fast wall. */
  speedup: number
}

export interface BenchResult {
  kind: 'bench'
  model: string
  family: string
  num_layers: number
  num_heads: number
  hidden_size: number
  vocab_size: number
  parameters: number
  dataset: string
  prompts: number
  method: string
  eps: number
  memory_budget_gib: number | 'auto'
  search_score: string
  sidecar: SidecarInfo
  /** Null when the sidecar cannot measure it (an older sidecar: MeasurePeak unimplemented). */
  peak: Peak | null
  /** Rounds per workload (naive then fast each); naive / fast / speedup are the median round's. */
  rounds: number
  ships: {naive: Measurement; fast: Measurement; speedup: number; rounds: Round[]; agreement: Agreement}
  search_step: {
    naive: Measurement & {chosen: string}
    fast: Measurement & {chosen: string}
    speedup: number
    rounds: Round[]
    /** Every round's naive and fast runs chose the same head. */
    chosen_equal: boolean
    /** In every round: the same head, or a tie within the score's tolerance (compare.ts). */
    chosen_agree: boolean
    /** Scores of every head, naive against fast, in the median round. */
    agreement: StepAgreement
  }
  /** Achieved / peak FLOP/s of the fast engine, Ships scan and Sahara step. */
  peak_fraction: {ships: number; search_step: number} | null
}


interface Pair<T extends {measurement: Measurement}> {
  naive: T
  fast: T
}

function round(pair: Pair<{measurement: Measurement}>): Round {
  const naive = pair.naive.measurement
  const fast = pair.fast.measurement
  return {
    naive_wall_s: naive.wall_s,
    fast_wall_s: fast.wall_s,
    fast_compute_s: fast.compute_s,
    fast_overhead_share: fast.overhead_share,
    speedup: naive.wall_s / fast.wall_s,
  }
}

/** The pair whose speed-up is the median (the lower middle one for an even count: a real round). */
export function medianPair<T extends {measurement: Measurement}>(pairs: Pair<T>[]): Pair<T> {
  const byRatio = [...pairs].sort((a, b) => round(a).speedup - round(b).speedup)
  return byRatio[Math.floor((byRatio.length - 1) / 2)]
}

export async function runBench(
  client: SidecarClient,
  work: Workload,
  outDir: string,
  log: (m: string) => void,
  /** Phases done of 1 + 4 x rounds (peak, then a Ships scan and a Sahara step per engine and round), fractions within one. */
  progress?: (done: number, total: number, what: string) => void,
  rounds = 1,
): Promise<BenchResult> {
  if (!Number.isSafeInteger(rounds) || rounds < 1) throw new RangeError(`bench: rounds must be a positive integer, got ${rounds}`)
  const facts = await client.describe()
  mkdirSync(outDir, {recursive: true})
  const quiet = () => {}
  const phases = 1 + 2 * BENCH_ENGINES.length * rounds
  let phase = 0
  const ctx = (name: string) => {
    const at = phase
    return {client, outDir: join(outDir, name), log: quiet, progress: (d: number, t: number, what: string) => progress?.(at + (t > 0 ? Math.min(1, d / t) : 0), phases, `${name}: ${what}`)}
  }

  progress?.(0, phases, 'measuring the peak')

  log(`bench: ${work.model.name} (${facts.family}, L=${facts.numLayers} H=${facts.numHeads} d=${facts.hiddenSize} vocab=${facts.vocabSize}, ${facts.device} ${dtypeName(facts.dtype)}), ${work.prompts} prompts of ${work.dataset.name}`)
  log('measuring the dense-matmul peak ...')
  let peak: Peak | null = null
  try {
    const response = await client.measurePeak({minSeconds: 2})
    peak = {flops_per_second: response.flopsPerSecond, dtype: dtypeName(response.dtype), size: response.size, device: response.device, repeats: response.repeats}
    log(`  peak ${(peak.flops_per_second / 1e9).toFixed(1)} GFLOP/s (${peak.dtype}, ${peak.size}³ matmuls on ${peak.device})`)
  } catch (error) {
    if (!(error instanceof SidecarError && error.code === 'UNIMPLEMENTED')) throw error
    log(`  warning: ${error.message}: no peak to compare against`)
  }

  progress?.(++phase, phases, 'peak measured')

  /** One workload on each engine, naive then fast, logged and counted as phases. */
  async function measurePair<T extends {measurement: Measurement}>(
    what: string,
    folder: string,
    measure: (engine: EngineName, context: ReturnType<typeof ctx>) => Promise<T>,
    result: (run: T) => string,
  ): Promise<Pair<T>> {
    const pair: Partial<Pair<T>> = {}
    for (const engine of BENCH_ENGINES) {
      log(`${engine}: ${what} ...`)
      const run = await measure(engine, ctx(`${folder}-${engine}`))
      pair[engine] = run
      progress?.(++phase, phases, `${engine}: ${what} done`)
      log(`  ${run.measurement.wall_s.toFixed(2)} s, ${result(run)}`)
    }

    return pair as Pair<T>
  }

  for (const engine of BENCH_ENGINES) await measureShips({...work, prompts: 1}, engine, ctx(`warmup-${engine}`))
  const ships: Pair<ShipsRun>[] = []
  const steps: Pair<StepRun>[] = []
  for (let r = 1; r <= rounds; r++) {
    const tag = rounds > 1 ? ` (round ${r} of ${rounds})` : ''
    const suffix = rounds > 1 ? `-${r}` : ''
    ships.push(
      await measurePair(
        `Ships scan (${facts.numLayers * facts.numHeads} heads x ${work.prompts} prompts)${tag}`,
        `ships${suffix}`,
        (engine, context) => measureShips(work, engine, context),
        (s) => `${s.measurement.heads_x_prompts_per_s.toFixed(1)} heads x prompts/s`,
      ),
    )
    steps.push(
      await measurePair(
        `one Sahara step (score ${work.score})${tag}`,
        `search${suffix}`,
        (engine, context) => measureSearchStep(work, engine, context),
        (step) => `chose ${step.chosen}`,
      ),
    )
  }

  const {naive, fast} = medianPair(ships)
  const {naive: stepNaive, fast: stepFast} = medianPair(steps)
  const fraction = (m: Measurement) => (peak && peak.flops_per_second > 0 ? m.flops_per_s / peak.flops_per_second : 0)
  return {
    kind: 'bench',
    model: work.model.name,
    family: facts.family,
    num_layers: facts.numLayers,
    num_heads: facts.numHeads,
    hidden_size: facts.hiddenSize,
    vocab_size: facts.vocabSize,
    parameters: facts.totalParameters,
    dataset: work.dataset.name,
    prompts: fast.measurement.prompts,
    method: work.method,
    eps: work.eps,
    memory_budget_gib: work.memoryBudgetGib === 0 ? 'auto' : work.memoryBudgetGib,
    search_score: work.score,
    sidecar: sidecarInfo(client.endpoint, facts),
    peak,
    rounds,
    ships: {naive: naive.measurement, fast: fast.measurement, speedup: round({naive, fast}).speedup, rounds: ships.map(round), agreement: compareShips(naive, fast)},
    search_step: {
      naive: {...stepNaive.measurement, chosen: stepNaive.chosen},
      fast: {...stepFast.measurement, chosen: stepFast.chosen},
      speedup: round({naive: stepNaive, fast: stepFast}).speedup,
      rounds: steps.map(round),
      chosen_equal: steps.every((pair) => pair.naive.chosen === pair.fast.chosen),
      chosen_agree: steps.every((pair) => compareStep(pair.naive, pair.fast, work.score).chosen_agree),
      agreement: compareStep(stepNaive, stepFast, work.score),
    },
    peak_fraction: peak ? {ships: fraction(fast.measurement), search_step: fraction(stepFast.measurement)} : null,
  }
}
