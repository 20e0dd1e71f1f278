/** The bench result as a readable table (lines of text). Pure. */
import {KL_ABS_TOLERANCE, KL_REL_TOLERANCE} from './compare.js'
import type {Measurement} from './measure.js'
import type {BenchResult, Round} from './run.js'

const pct = (x: number) => `${(100 * x).toFixed(1)}%`
const secs = (x: number) => `${x.toFixed(2)} s`
const rate = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1))

export function flopsText(x: number): string {
  if (x >= 1e12) return `${(x / 1e12).toFixed(2)} TFLOP/s`
  return `${(x / 1e9).toFixed(2)} GFLOP/s`
}

function rows(label: string, naive: Measurement, fast: Measurement, peak: number): string[] {
  const line = (name: string, a: string, b: string) => `  ${name.padEnd(28)}${a.padStart(14)}${b.padStart(14)}`
  const split = (m: Measurement) => `${secs(m.compute_s)} / ${secs(m.transfer_s)} / ${secs(m.scoring_s)}`
  return [
    `${label}: ${fast.heads} heads x ${fast.prompts} prompts`,
    line('', 'naive', 'fast'),
    line('wall', secs(naive.wall_s), secs(fast.wall_s)),
    line('heads x prompts / s', rate(naive.heads_x_prompts_per_s), rate(fast.heads_x_prompts_per_s)),
    line('sidecar compute', secs(naive.compute_s), secs(fast.compute_s)),
    line('transfer', secs(naive.transfer_s), secs(fast.transfer_s)),
    line('TS scoring, sidecar waiting', secs(naive.scoring_s), secs(fast.scoring_s)),
    line('TS scoring, all', secs(naive.scoring_total_s), secs(fast.scoring_total_s)),
    line('transfer + scoring share', pct(naive.overhead_share), pct(fast.overhead_share)),
    line('forwards (model calls)', String(naive.forwards), String(fast.forwards)),
    line('achieved FLOP/s', flopsText(naive.flops_per_s), flopsText(fast.flops_per_s)),
    line('  of the matmul peak', peak > 0 ? pct(naive.flops_per_s / peak) : '-', peak > 0 ? pct(fast.flops_per_s / peak) : '-'),
    `  (compute / transfer / scoring: naive ${split(naive)}; fast ${split(fast)})`,
  ]
}

/** "fast / naive: 9.1x", with every round's ratio when there were several. */
export function speedupLine(speedup: number, rounds: Round[]): string {
  if (rounds.length < 2) return `  fast / naive: ${speedup.toFixed(1)}x`
  const ratios = rounds.map((r) => r.speedup)
  return `  fast / naive: ${speedup.toFixed(1)}x, the median of ${rounds.length} rounds (${Math.min(...ratios).toFixed(1)}-${Math.max(...ratios).toFixed(1)}x: ${ratios.map((x) => x.toFixed(1)).join(' ')}); the columns are that round's`
}

function stepVerdict(r: BenchResult): string {
  const step = r.search_step
  if (step.chosen_equal) return step.rounds.length > 1 ? 'equal in every round' : 'equal'
  if (step.chosen_agree) return 'a tie: the heads\' scores are equal within the tolerance, so float noise picks one'
  return 'DIFFER'
}

export function benchTable(r: BenchResult): string[] {
  const a = r.ships.agreement
  const out = [
    `sahara bench: ${r.model} (${r.family}, ${r.num_layers} layers x ${r.num_heads} heads, d ${r.hidden_size}, vocab ${r.vocab_size}, ${(r.parameters / 1e6).toFixed(1)}M parameters)`,
    `  on ${r.sidecar.device} (${r.sidecar.dtype}), ${r.prompts} prompts of ${r.dataset}, ${r.method} eps=${r.eps}, memory budget ${r.memory_budget_gib}`,
    r.peak ? `  dense matmul peak: ${flopsText(r.peak.flops_per_second)} (${r.peak.dtype}, ${r.peak.size}x${r.peak.size})` : '  dense matmul peak: not measured (the sidecar has no MeasurePeak)',
    '',
    ...rows('Ships scan', r.ships.naive, r.ships.fast, r.peak?.flops_per_second ?? 0),
    speedupLine(r.ships.speedup, r.ships.rounds),
    `  agreement: KL rel. diff max ${a.kl_rel_diff_max.toExponential(2)} over KLs >= 1e-2, abs. diff max ${a.kl_abs_diff_max_below_floor.toExponential(1)} below (${a.kl_below_floor} of ${a.kl_compared});`,
    `    ${a.kl_outside_tolerance} KLs outside ${KL_REL_TOLERANCE.toExponential(0)} rel. + ${KL_ABS_TOLERANCE.toExponential(0)} abs.; mean KL rel. diff max ${a.mean_kl_rel_diff_max.toExponential(2)}; top-10 ${a.top10_equal ? 'equal' : `DIFFER: naive ${a.top10.a.join(' ')} / fast ${a.top10.b.join(' ')}`}`,
    '',
    ...rows(`Sahara step (score ${r.search_score})`, r.search_step.naive, r.search_step.fast, r.peak?.flops_per_second ?? 0),
    speedupLine(r.search_step.speedup, r.search_step.rounds),
    `  chosen head: naive ${r.search_step.naive.chosen}, fast ${r.search_step.fast.chosen} (${stepVerdict(r)}); scores: max abs. diff ${r.search_step.agreement.score_abs_diff_max.toExponential(1)}, ${r.search_step.agreement.scores_outside_tolerance} of ${r.search_step.agreement.scores_compared} outside tolerance`,
  ]
  const missing = r.ships.fast.without_stats + r.ships.naive.without_stats
  if (missing > 0) out.push('', `warning: ${missing} requests came back without ForwardStats (an older sidecar): compute and FLOP figures are incomplete`)
  return out
}
