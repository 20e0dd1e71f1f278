/**
 * `sahara bench`: on one sidecar, in one run, the naive and the fast engine on the same
 * workloads (a full Ships scan, one Sahara step), the dense-matmul peak of the same device,
 * and whether the two engines agree. Each engine first does a one-prompt warm-up scan (not
 * measured). Every run writes into its own folder under `outDir`.
 */
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'

import type {EngineName} from '../jobs/engine.js'
import {DType, type SidecarClient, SidecarError, type SidecarInfo, sidecarInfo} from '../sidecar/client.js'
import {type Agreement, compareShips} from './compare.js'
import {type Measurement, type Workload, measureSearchStep, measureShips} from './measure.js'

export const BENCH_ENGINES: readonly EngineName[] = ['naive', 'fast']

export interface Peak {
  flops_per_second: number
  dtype: string
  size: number
  device: string
  repeats: number
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
  ships: {naive: Measurement; fast: Measurement; speedup: number; agreement: Agreement}
  search_step: {naive: Measurement & {chosen: string}; fast: Measurement & {chosen: string}; speedup: number; chosen_equal: boolean}
  /** Achieved / peak FLOP/s of the fast engine, Ships scan and Sahara step. */
  peak_fraction: {ships: number; search_step: number} | null
}

const dtypeName = (d: DType) => (DType[d] ?? String(d)).replace('DTYPE_', '').toLowerCase()

export async function runBench(
  client: SidecarClient,
  work: Workload,
  outDir: string,
  log: (m: string) => void,
  /** Phases done of 5 (peak, then a Ships scan and a Sahara step per engine), fractions within one. */
  progress?: (done: number, total: number, what: string) => void,
): Promise<BenchResult> {
  const facts = await client.describe()
  mkdirSync(outDir, {recursive: true})
  const quiet = () => {}
  const phases = 1 + 2 * BENCH_ENGINES.length
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

  const ships = new Map<EngineName, Awaited<ReturnType<typeof measureShips>>>()
  const steps = new Map<EngineName, Awaited<ReturnType<typeof measureSearchStep>>>()
  for (const engine of BENCH_ENGINES) {
    await measureShips({...work, prompts: 1}, engine, ctx(`warmup-${engine}`))
    log(`${engine}: Ships scan (${facts.numLayers * facts.numHeads} heads x ${work.prompts} prompts) ...`)
    const s = await measureShips(work, engine, ctx(`ships-${engine}`))
    ships.set(engine, s)
    progress?.(++phase, phases, `${engine}: Ships scan done`)
    log(`  ${s.measurement.wall_s.toFixed(2)} s, ${s.measurement.heads_x_prompts_per_s.toFixed(1)} heads x prompts/s`)
    log(`${engine}: one Sahara step (score ${work.score}) ...`)
    const step = await measureSearchStep(work, engine, ctx(`search-${engine}`))
    steps.set(engine, step)
    progress?.(++phase, phases, `${engine}: Sahara step done`)
    log(`  ${step.measurement.wall_s.toFixed(2)} s, chose ${step.chosen}`)
  }

  const naive = ships.get('naive')!
  const fast = ships.get('fast')!
  const stepNaive = steps.get('naive')!
  const stepFast = steps.get('fast')!
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
    ships: {naive: naive.measurement, fast: fast.measurement, speedup: naive.measurement.wall_s / fast.measurement.wall_s, agreement: compareShips(naive, fast)},
    search_step: {
      naive: {...stepNaive.measurement, chosen: stepNaive.chosen},
      fast: {...stepFast.measurement, chosen: stepFast.chosen},
      speedup: stepNaive.measurement.wall_s / stepFast.measurement.wall_s,
      chosen_equal: stepNaive.chosen === stepFast.chosen,
    },
    peak_fraction: peak ? {ships: fraction(fast.measurement), search_step: fraction(stepFast.measurement)} : null,
  }
}
