/** Engine options (flags and sweep keys), the pre-filter's parsing and head choice, the request pipeline, stats sums. */
import {mkdirSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {beforeAll, describe, expect, it} from 'vitest'

import {parseEngineFlags} from '../../src/cli/ablation-flags.js'
import {parseSweep} from '../../src/config/sweep.js'
import {
  type PipelineTrace,
  addStats,
  closeTrace,
  decodeFloat,
  emptyTotals,
  encodeFloat,
  engineRequest,
  outstandingTracker,
  parseMemoryBudget,
  parsePrefilter,
  pipelineGroupSize,
  prefilterHeads,
} from '../../src/jobs/engine.js'
import type {SearchParams} from '../../src/jobs/search.js'
import type {ShipsParams} from '../../src/jobs/ships.js'
import {formatHead} from '../../src/science/heads.js'
import {Engine} from '../../src/sidecar/client.js'
import {configErrorOf} from '../helpers.js'

let dir: string
let file: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sahara-engine-'))
  mkdirSync(join(dir, 'tiny'))
  writeFileSync(join(dir, 'tiny', 'config.json'), '{}')
  writeFileSync(join(dir, 'prompts.txt'), 'a\nb\n')
  file = join(dir, 'sweep.yaml')
})

const job = (kind: string, extra: string) => `name: t\njobs:\n  - kind: ${kind}\n    matrix: {model: ./tiny, dataset: prompts.txt}\n${extra}`

describe('--engine, --memory-budget, --prefilter', () => {
  it('parse the memory budget: auto or GiB > 0', () => {
    expect(parseMemoryBudget('auto')).toBe(0)
    expect(parseMemoryBudget('12.5')).toBe(12.5)
    for (const bad of ['0', '-1', 'lots', '', 'Infinity']) expect(parseMemoryBudget(bad)).toBe(`--memory-budget must be "auto" or a positive number of GiB, got ${JSON.stringify(bad)}`)
  })

  it('parse the pre-filter: atp:K with K >= 1', () => {
    expect(parsePrefilter('atp:8')).toEqual({kind: 'atp', k: 8})
    for (const bad of ['atp', 'atp:0', 'atp:-3', 'atp:2.5', 'grad:8', 'atp:k']) expect(parsePrefilter(bad)).toMatch(/^--prefilter must be atp:K with K a positive integer .*, got /)
  })

  it('read the flags together; the pre-filter refuses mean ablation', () => {
    expect(parseEngineFlags({engine: 'naive', 'memory-budget': 'auto'})).toEqual({engineOptions: {engine: 'naive', memoryBudgetGib: 0}})
    expect(parseEngineFlags({engine: 'fast', 'memory-budget': '4', prefilter: 'atp:16', method: 'sc'})).toEqual({engineOptions: {engine: 'fast', memoryBudgetGib: 4}, prefilter: {kind: 'atp', k: 16}})
    expect(parseEngineFlags({engine: 'fast', 'memory-budget': 'x'})).toMatch(/--memory-budget must be/)
    expect(parseEngineFlags({engine: 'fast', 'memory-budget': 'auto', prefilter: 'atp:4', method: 'mean'})).toBe('--prefilter needs --method ua or sc (mean ablation has no eps to differentiate)')
  })

  it('become the request fields (auto = 0)', () => {
    expect(engineRequest()).toEqual({engine: Engine.ENGINE_FAST, memoryBudgetGib: 0})
    expect(engineRequest({engine: 'naive', memoryBudgetGib: 3})).toEqual({engine: Engine.ENGINE_NAIVE, memoryBudgetGib: 3})
  })
})

describe('sweep keys engine, memory_budget_gib, prefilter', () => {
  it('default to fast, auto, no pre-filter; are read on ships and search jobs; the pre-filter is in the job name', () => {
    const ships = parseSweep(job('ships', '    engine: naive\n    memory_budget_gib: 2\n'), file).jobs[0]
    expect((ships.params as ShipsParams).engineOptions).toEqual({engine: 'naive', memoryBudgetGib: 2})
    const plain = parseSweep(job('ships', '    memory_budget_gib: auto\n'), file).jobs[0]
    expect((plain.params as ShipsParams).engineOptions).toEqual({engine: 'fast', memoryBudgetGib: 0})
    expect((plain.params as ShipsParams).prefilter).toBeUndefined()
    const search = parseSweep(job('search', '    steps: 2\n    prefilter: atp:6\n'), file).jobs[0]
    expect(search.name).toBe('search-tiny-prompts-ua-1e-5-atp6')
    expect((search.params as SearchParams).prefilter).toEqual({kind: 'atp', k: 6})
    expect((search.params as SearchParams).engineOptions).toEqual({engine: 'fast', memoryBudgetGib: 0})
  })

  it.each([
    ['ships', '    engine: turbo\n', 5, 13, 'jobs[0].engine: "turbo" is not one of fast, naive'],
    ['ships', '    memory_budget_gib: 0\n', 5, 24, 'jobs[0].memory_budget_gib: memory_budget_gib must be a positive finite number, got 0'],
    ['search', '    memory_budget_gib: lots\n', 5, 24, 'jobs[0].memory_budget_gib: memory_budget_gib must be "auto" or a positive number of GiB, got string "lots"'],
    ['ships', '    memory_budget_gib: true\n', 5, 24, 'jobs[0].memory_budget_gib: memory_budget_gib must be "auto" or a positive number of GiB, got boolean true'],
    ['ships', '    prefilter: atp:0\n', 5, 16, 'jobs[0].prefilter: prefilter must be atp:K with K a positive integer'],
    ['search', '    steps: 3\n    prefilter: atp:2\n', 6, 16, 'jobs[0].prefilter: prefilter atp:2 keeps 2 heads, fewer than steps = 3'],
  ])('%s job, %j: an error at file:line:col', (kind, extra, line, col, message) => {
    const error = configErrorOf(() => parseSweep(job(kind, extra), file))
    expect(error.message).toContain(`${file}:${line}:${col}: ${message}`)
  })

  it('a pre-filter with mean ablation is refused where the pre-filter is written', () => {
    const error = configErrorOf(() => parseSweep(`name: t\njobs:\n  - kind: ships\n    prefilter: atp:3\n    matrix: {model: ./tiny, dataset: prompts.txt, method: mean}\n`, file))
    expect(error.message).toBe(`${file}:4:16: jobs[0].prefilter: the attribution pre-filter needs method ua or sc (mean ablation has no eps to differentiate)`)
  })
})

describe('pre-filter head choice', () => {
  it('keeps the K heads with the largest mean |attribution| over prompts, in scan order; ties in scan order', () => {
    const g = {numLayers: 2, numHeads: 3}
    // Two prompts x 6 heads. Mean |a|: [0.5, 2, 0.5, 3, 0, 2]
    const attribution = [1, -4, 0, 6, 0, 2, 0, 0, 1, 0, 0, -2]
    const {heads, meanAbs} = prefilterHeads(attribution, 2, g, 3)
    expect(Array.from(meanAbs)).toEqual([0.5, 2, 0.5, 3, 0, 2])
    expect(heads.map(formatHead)).toEqual(['L0H1', 'L1H0', 'L1H2'])
    expect(prefilterHeads(attribution, 2, g, 4).heads.map(formatHead)).toEqual(['L0H0', 'L0H1', 'L1H0', 'L1H2'])
    expect(prefilterHeads(attribution, 2, g, 99).heads).toHaveLength(6)
    expect(() => prefilterHeads([1, 2], 2, g, 1)).toThrow('attribution has 2 values, expected 2 x 6')
  })
})

describe('sidecar idle time across concurrent requests', () => {
  const wait = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

  it('counts only the stretches with no request outstanding, however many overlap', async () => {
    const trace: PipelineTrace = {idleMs: 0}
    const tracked = outstandingTracker(trace)
    // two overlapping requests: no idle time between them
    await Promise.all([tracked(() => wait(30)), wait(5).then(() => tracked(() => wait(30)))])
    expect(trace.idleMs).toBe(0)
    await wait(25) // nothing outstanding: idle
    await tracked(() => wait(5))
    expect(trace.idleMs).toBeGreaterThanOrEqual(20)
    const before = trace.idleMs
    await wait(20)
    closeTrace(trace) // the last stretch once closed
    expect(trace.idleMs).toBeGreaterThanOrEqual(before + 19)
    const fresh: PipelineTrace = {idleMs: 0}
    closeTrace(fresh)
    expect(fresh.idleMs).toBe(0)
  })

  it('a failing request still ends its outstanding stretch, and non-finite floats survive JSON', async () => {
    const trace: PipelineTrace = {idleMs: 0}
    const tracked = outstandingTracker(trace)
    await expect(tracked(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom')
    expect(trace.idleSince).toBeDefined()
    const values = [1.5, Number.POSITIVE_INFINITY, Number.NaN, -0.25]
    const back = (JSON.parse(JSON.stringify(values.map(encodeFloat))) as (number | string)[]).map(decodeFloat)
    expect(back).toEqual(values)
  })
})

describe('search request groups', () => {
  it('split big candidate sets in about 4 for pipelining, never below 32 heads or above the memory plan', () => {
    expect(pipelineGroupSize(16, 16)).toBe(16)
    expect(pipelineGroupSize(144, 144)).toBe(36)
    expect(pipelineGroupSize(100, 144)).toBe(32)
    expect(pipelineGroupSize(1024, 81)).toBe(81)
    expect(pipelineGroupSize(5, 2)).toBe(2)
  })
})

describe('stats totals', () => {
  it('sum ForwardStats; requests without stats are counted', () => {
    const t = emptyTotals()
    addStats(t, {computeSeconds: 1.5, forwards: 2, rows: 10, layerTokens: 100, flops: 1e9, maxBatchRows: 8, oomSplits: 0})
    addStats(t, {computeSeconds: 0.5, forwards: 1, rows: 4, layerTokens: 50, flops: 5e8, maxBatchRows: 4, oomSplits: 1})
    addStats(t, undefined)
    expect(t).toEqual({requests: 3, compute_s: 2, forwards: 3, rows: 14, layer_tokens: 150, flops: 1.5e9, max_batch_rows: 8, oom_splits: 1, without_stats: 1})
  })
})
