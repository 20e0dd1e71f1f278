import {describe, expect, it} from 'vitest'

import type {AsrSummary} from '../../src/jobs/asr.js'
import type {JobSpec} from '../../src/jobs/registry.js'
import {type FinishedJob, asrTableMarkdown, asrTables, sweepMarkdown} from '../../src/reports/sweep-summary.js'
import type {HeadSelection} from '../../src/science/head-sets.js'
import type {Head} from '../../src/science/heads.js'

const model = {name: 'organism', source: '/m/organism', kind: 'embedded' as const}

function spec(name: string, kind: string, entry: string, heads?: HeadSelection): JobSpec {
  return {kind, name, entry, model, params: heads ? {heads} : {}}
}

/** An asr result with the fields the tables read; n = 10 prompts, the clean model refuses 8. */
function asr(heads: Head[], asrValue: number, flip: number | null, method = 'ua'): AsrSummary {
  return {
    kind: 'asr',
    asr: asrValue,
    baseline_asr: 0.2,
    flip_rate: flip,
    n: 10,
    n_refused_baseline: 8,
    n_flipped: flip === null ? 0 : Math.round(flip * 8),
    model: 'organism',
    dataset: 'jailbreakbench',
    method,
    eps: 1e-5,
    template: 'paper',
    sampling: 'greedy',
    judge: 'keyword-paper',
    max_new_tokens: 24,
    heads,
    parameters: {modified: 16_384 * heads.length, total: 1_311_872, percent: (100 * 16_384 * heads.length) / 1_311_872, percent_text: '', counted: ''},
  } as unknown as AsrSummary
}

const L1H2 = {layer: 1, head: 2}
const L2H0 = {layer: 2, head: 0}
const L0H1 = {layer: 0, head: 1}

describe('the sweep summary: ASR by number of heads beside random heads (Table 3)', () => {
  const search = spec('sahara-organism', 'search', 'sahara')
  const ships = spec('ships-organism', 'ships', 'ships')
  const jobs: FinishedJob[] = [
    {spec: spec('asr-top1', 'asr', 'asr-sahara', {kind: 'job', job: search.name, top: 1}), out: 'a1', headline: '', result: asr([L1H2], 0.6, 0.5)},
    {spec: spec('asr-top2', 'asr', 'asr-sahara', {kind: 'job', job: search.name, top: 2}), out: 'a2', headline: '', result: asr([L1H2, L2H0], 1, 1)},
    {spec: spec('ships-top2', 'asr', 'asr-ships', {kind: 'job', job: ships.name, top: 2}), out: 's2', headline: '', result: asr([L1H2, L0H1], 0.7, 0.625)},
    {spec: spec('rand-s1', 'asr', 'asr-random', {kind: 'random', k: 2, seed: 1, avoid: []}), out: 'r1', headline: '', result: asr([L0H1, L2H0], 0.2, 0)},
    {spec: spec('rand-s2', 'asr', 'asr-random', {kind: 'random', k: 2, seed: 2, avoid: []}), out: 'r2', headline: '', result: asr([L0H1, L1H2], 0.4, 0.25)},
    {spec: spec('rand3', 'asr', 'asr-random', {kind: 'random', k: 3, seed: 1, avoid: []}), out: 'r3', headline: '', result: asr([L0H1, L1H2, L2H0], 0.3, 0.125)},
    {spec: spec('sc-top1', 'asr', 'asr-sahara', {kind: 'job', job: search.name, top: 1}), out: 'c1', headline: '', result: asr([L1H2], 0.2, 0, 'sc')},
  ]
  const tables = asrTables(jobs, [search, ships, ...jobs.map((j) => j.spec)])

  it('groups asr jobs by cell (here UA and SC) and labels each head source by its entry', () => {
    expect(tables.map((t) => t.method)).toEqual(['ua', 'sc'])
    const ua = tables[0]
    expect(ua.rows.map((r) => [r.source, r.k])).toEqual([
      ['sahara (Sahara group)', 1],
      ['sahara (Sahara group)', 2],
      ['ships (Ships top-k)', 2],
    ])
    expect(ua.baseline_asr).toBe(0.2)
    expect(ua.rows[1].increase).toBeCloseTo(0.8, 12)
  })

  it('puts the mean and sd of the random sets of the same k beside each row', () => {
    const random2 = tables[0].rows[1].random!
    expect(random2.repeats).toBe(2)
    expect(random2.asr_mean).toBeCloseTo(0.3, 12)
    expect(random2.asr_sd).toBeCloseTo(Math.sqrt(0.02), 12)
    expect(random2.increase_mean).toBeCloseTo(0.1, 12)
    expect(random2.flip_rate_mean).toBeCloseTo(0.125, 12)
    expect(tables[0].rows[0].random).toBeNull() // no random 1-head sets
    expect(tables[0].random.map((r) => r.k)).toEqual([2, 3])
  })

  it('renders a Markdown table with the increase, the random baseline and the parameter percent', () => {
    const md = asrTableMarkdown(tables[0])
    expect(md).toContain('### organism · jailbreakbench · UA eps 0.00001 · paper template')
    expect(md).toContain('| sahara (Sahara group) | 2 | L1H2,L2H0 | 1.000 | +0.800 | 1.000 | 0.300 ± 0.141 (R=2) | +0.100 | 0.125 ± 0.177 | 2.50% (32,768) |')
    expect(md).toContain('| random only | 3 | (R=1 sets) |')
    const whole = sweepMarkdown({sweep: 'demo', file: 'demo.yaml', started_at: 't0', updated_at: 't1', jobs_total: 9, jobs_done: 7, jobs: [], asr_tables: tables})
    expect(whole).toContain('7 of 9 jobs done')
    expect(whole).toContain("the paper's Table 3")
  })
})
