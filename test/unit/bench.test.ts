import {describe, expect, it} from 'vitest'

import type {Measurement} from '../../src/bench/measure.js'
import {compareStep} from '../../src/bench/compare.js'
import {speedupLine} from '../../src/bench/report.js'
import {medianPair} from '../../src/bench/run.js'

function run(engine: 'naive' | 'fast', wall: number): {measurement: Measurement; label: string} {
  const measurement: Measurement = {
    engine,
    heads: 16,
    prompts: 100,
    wall_s: wall,
    heads_x_prompts_per_s: 1600 / wall,
    compute_s: wall * 0.9,
    scoring_s: 0,
    scoring_total_s: 0,
    transfer_s: wall * 0.1,
    overhead_share: 0.1,
    flops: 1e9,
    flops_per_s: 1e9 / (wall * 0.9),
    forwards: 1,
    rows: 1,
    requests: 1,
    without_stats: 0,
  }
  return {measurement, label: `${engine}-${wall}`}
}

const pair = (naive: number, fast: number) => ({naive: run('naive', naive), fast: run('fast', fast)})

describe('bench rounds', () => {
  it('reports the round whose naive/fast ratio is the median, both runs from that round', () => {
    // ratios 5, 10, 8: the median round is the third, though neither of its walls is a median
    const chosen = medianPair([pair(10, 2), pair(20, 2), pair(12, 1.5)])
    expect([chosen.naive.label, chosen.fast.label]).toEqual(['naive-12', 'fast-1.5'])
  })

  it('takes the lower middle round of an even count, and the only round of one', () => {
    expect(medianPair([pair(10, 1), pair(6, 1), pair(8, 1), pair(9, 1)]).naive.label).toBe('naive-8')
    expect(medianPair([pair(7, 1)]).naive.label).toBe('naive-7')
  })

  it('lists every round ratio beside the median when there are several', () => {
    const round = (speedup: number) => ({naive_wall_s: speedup, fast_wall_s: 1, fast_compute_s: 0.9, fast_overhead_share: 0.1, speedup})
    expect(speedupLine(8.04, [round(8.04)])).toBe('  fast / naive: 8.0x')
    expect(speedupLine(9.1, [round(7.95), round(9.1), round(10.44)])).toBe(
      "  fast / naive: 9.1x, the median of 3 rounds (8.0-10.4x: 8.0 9.1 10.4); the columns are that round's",
    )
  })

  it('a Sahara step agrees when both pick one head, or two heads whose scores tie within the tolerance', () => {
    const scores = (entries: [string, number][]) => new Map(entries)
    const naive = {chosen: 'L1H2', scores: scores([['L1H2', 40], ['L2H0', 12], ['L0H1', 3]])}
    const same = compareStep(naive, {chosen: 'L1H2', scores: scores([['L1H2', 40.001], ['L2H0', 12], ['L0H1', 3]])}, 'angles')
    expect(same).toEqual({score_abs_diff_max: expect.closeTo(0.001, 9), scores_outside_tolerance: 0, scores_compared: 3, chosen_equal: true, chosen_agree: true})

    // angles at float noise (~1e-5 degrees): the picks differ, the scores tie
    const noiseA = {chosen: 'L0H0', scores: scores([['L0H0', 1.4e-5], ['L2H5', 0.9e-5]])}
    const noiseB = {chosen: 'L2H5', scores: scores([['L0H0', 0.7e-5], ['L2H5', 1.1e-5]])}
    expect(compareStep(noiseA, noiseB, 'angles')).toMatchObject({scores_outside_tolerance: 0, chosen_equal: false, chosen_agree: true})
    // the same numbers as mean KLs (tolerance 2e-6 absolute): L0H0's differ, so the picks do not tie
    expect(compareStep(noiseA, noiseB, 'kl')).toMatchObject({scores_outside_tolerance: 1, chosen_agree: false})
    const apart = compareStep(naive, {chosen: 'L2H0', scores: scores([['L1H2', 11], ['L2H0', 12], ['L0H1', 3]])}, 'angles')
    expect(apart).toMatchObject({scores_outside_tolerance: 1, chosen_equal: false, chosen_agree: false})
    expect(compareStep(naive, {chosen: 'L1H2', scores: scores([['L1H2', 40]])}, 'kl').score_abs_diff_max).toBe(Number.POSITIVE_INFINITY)
  })
})
