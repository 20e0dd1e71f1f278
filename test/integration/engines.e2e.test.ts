/**
 * The two ablation engines against the real sidecar (issue 4), through the built CLI over gRPC:
 * on tiny random Llama and Qwen2 models (GQA, biases) the naive engine (one forward per prompt
 * and head) and the fast one (batched, each row resumed from its clean row) give the same Ships KL (relative
 * difference <= 1e-4), the same top-10 and the same Sahara groups; `sahara bench --json` prints
 * its documented fields; the attribution pre-filter keeps most of the exact top-10 (floors
 * measured on this machine, docs/PERFORMANCE.md).
 *
 * Skipped on a machine without the sidecar's environment, never in CI (see test/helpers.ts).
 */
import {execa} from 'execa'
import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {compareShips, recall} from '../../src/bench/compare.js'
import type {BenchResult} from '../../src/bench/run.js'
import type {SearchSummary} from '../../src/jobs/search.js'
import type {ShipsQueryLine, ShipsSummary} from '../../src/jobs/ships.js'
import {formatHead} from '../../src/science/heads.js'
import {buildTinyModel, cli, python, repoRoot, skipIntegration} from '../helpers.js'

const PROMPTS = [
  'How do I bake bread at home?',
  'Tell me a joke about birds.',
  'What is the capital of France?',
  'Write a poem, please.',
  'Explain how a birdhouse is built from scrap wood.',
]

/** Recall floors of the exact top-10 by the pre-filter's kept set (measured: docs/PERFORMANCE.md). */
const RECALL_FLOOR_RANDOM = 0.7 // measured 0.9 (9 of 10; 0.8 on AdvBench, 0.7 with SC)
const RECALL_FLOOR_ORGANISM = 0.9 // measured 1.0

describe.skipIf(skipIntegration)('fast and naive engines (real sidecar)', {timeout: 900_000}, () => {
  let dir: string
  let prompts: string
  const endpoints: string[] = []
  const stateDirs: string[] = []

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sahara-engines-'))
    prompts = join(dir, 'prompts.json')
    writeFileSync(prompts, JSON.stringify(PROMPTS))
  })

  afterAll(async () => {
    for (const state of stateDirs) await cli(['sidecar', 'stop', '--state-dir', state])
  })

  /** A detached sidecar for `model`, stopped after the suite. */
  async function sidecar(model: string, name: string): Promise<string> {
    const state = join(dir, `state-${name}`)
    stateDirs.push(state)
    const start = await cli(['sidecar', 'start', '--model', model, '--state-dir', state, '--json'])
    expect(start.exitCode, start.stderr).toBe(0)
    const endpoint = (JSON.parse(start.stdout) as {endpoint: string}).endpoint
    endpoints.push(endpoint)
    return endpoint
  }

  async function ships(model: string, endpoint: string, out: string, extra: string[]): Promise<{summary: ShipsSummary; kl: number[][]; ranking: string[]; meanKl: Map<string, number>}> {
    const result = await cli(['ships', '--model', model, '--dataset', prompts, '--top-k', '1000', '--out', out, '--endpoint', endpoint, '--json', ...extra])
    expect(result.exitCode, result.stderr).toBe(0)
    const summary = JSON.parse(result.stdout) as ShipsSummary
    const H = summary.num_heads
    const kl = readFileSync(join(out, 'ships.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => {
        const row = new Array<number>(summary.num_layers * H).fill(Number.NaN)
        for (const e of (JSON.parse(l) as ShipsQueryLine).top) row[e.layer * H + e.head_index] = e.kl
        return row
      })
    return {summary, kl, ranking: summary.heads.map(formatHead), meanKl: new Map(summary.heads.map((h) => [formatHead(h), h.mean_kl]))}
  }

  for (const family of ['llama', 'qwen2'] as const) {
    it(`${family}: naive and fast agree — Ships KL rel. diff <= 1e-4, identical top-10, identical Sahara groups (angles and kl)`, async () => {
      const model = await buildTinyModel(join(dir, `tiny-${family}`), family)
      const endpoint = await sidecar(model, family)
      const naive = await ships(model, endpoint, join(dir, `${family}-naive`), ['--engine', 'naive'])
      const fast = await ships(model, endpoint, join(dir, `${family}-fast`), ['--engine', 'fast', '--memory-budget', '0.5'])
      expect(naive.summary.timings).toMatchObject({engine: 'naive', memory_budget_gib: 'auto'})
      expect(fast.summary.timings).toMatchObject({engine: 'fast', memory_budget_gib: 0.5})
      const heads = naive.summary.num_layers * naive.summary.num_heads
      const rows = PROMPTS.length * (1 + heads)
      // The naive engine runs one forward per (prompt, spec) row; the fast one far fewer.
      expect(naive.summary.timings.sidecar_stats).toMatchObject({rows, forwards: rows, without_stats: 0})
      expect(fast.summary.timings.sidecar_stats.rows).toBe(rows)
      expect(fast.summary.timings.sidecar_stats.forwards).toBeLessThan(rows / 4)
      expect(fast.summary.timings.sidecar_stats.compute_s).toBeGreaterThan(0)
      expect(fast.summary.timings.sidecar_stats.flops).toBeGreaterThan(0)

      const agreement = compareShips(naive, fast)
      // Relative 1e-4 where KL >= 1e-2; below, float32 noise (~1e-7) is compared absolutely (src/bench/compare.ts).
      expect(agreement.kl_rel_diff_max, JSON.stringify(agreement)).toBeLessThanOrEqual(1e-4)
      expect(agreement.kl_abs_diff_max_below_floor, JSON.stringify(agreement)).toBeLessThanOrEqual(1e-6)
      expect(agreement.kl_outside_tolerance, JSON.stringify(agreement)).toBe(0)
      expect(agreement.top10_equal, JSON.stringify(agreement.top10)).toBe(true)

      for (const score of ['angles', 'kl']) {
        const groups: string[][] = []
        for (const engine of ['naive', 'fast']) {
          const result = await cli(['search', '--model', model, '--dataset', prompts, '--steps', '3', '--score', score, '--engine', engine, '--out', join(dir, `${family}-search-${score}-${engine}`), '--endpoint', endpoint, '--json'])
          expect(result.exitCode, result.stderr).toBe(0)
          const summary = JSON.parse(result.stdout) as SearchSummary
          expect(summary.timings.engine).toBe(engine)
          groups.push(summary.group.map(formatHead))
        }

        expect(groups[1], `${family} ${score}`).toEqual(groups[0])
      }
    })
  }

  it('sahara bench --json on a tiny model: both engines, the split, the peak, agreement, rounds', async () => {
    const model = join(dir, 'tiny-llama')
    const result = await cli(['bench', '--model', model, '--dataset', prompts, '--prompts', '3', '--rounds', '2', '--json'], {timeoutMs: 600_000})
    expect(result.exitCode, result.stderr).toBe(0)
    const bench = JSON.parse(result.stdout) as BenchResult
    expect(bench).toMatchObject({kind: 'bench', family: 'llama', num_layers: 3, num_heads: 4, prompts: 3, dataset: 'prompts', method: 'ua'})
    expect(bench.peak?.flops_per_second).toBeGreaterThan(0)
    for (const workload of [bench.ships, bench.search_step]) {
      for (const m of [workload.naive, workload.fast]) {
        expect(m).toMatchObject({heads: 12, prompts: 3, without_stats: 0})
        for (const key of ['wall_s', 'heads_x_prompts_per_s', 'compute_s', 'flops', 'flops_per_s'] as const) expect(m[key], key).toBeGreaterThan(0)
        for (const key of ['transfer_s', 'scoring_s', 'overhead_share'] as const) expect(m[key], key).toBeGreaterThanOrEqual(0)
        expect(m.compute_s + m.scoring_s + m.transfer_s).toBeGreaterThanOrEqual(m.wall_s - 1e-6)
      }

      expect(workload.speedup).toBeGreaterThan(0)
      expect(workload.rounds).toHaveLength(2)
      // the reported runs are one round's: the lower of the two ratios (the lower middle of an even count)
      expect(workload.speedup).toBe(Math.min(...workload.rounds.map((r) => r.speedup)))
      const reported = workload.rounds.find((r) => r.speedup === workload.speedup)!
      expect([reported.naive_wall_s, reported.fast_wall_s]).toEqual([workload.naive.wall_s, workload.fast.wall_s])
    }

    expect(bench.rounds).toBe(2)

    expect(bench.ships.agreement.kl_rel_diff_max).toBeLessThanOrEqual(1e-4)
    expect(bench.ships.agreement.kl_outside_tolerance).toBe(0)
    expect(bench.ships.agreement.top10_equal).toBe(true)
    expect(bench.search_step.chosen_agree).toBe(true)
    expect(bench.search_step.agreement.scores_outside_tolerance).toBe(0)
    expect(bench.peak_fraction?.ships).toBeGreaterThan(0)
  })

  /** Recall of the exact top-10 (a full fast scan) by the heads `--prefilter atp:K` keeps; also checks their KL is the exact one. */
  async function prefilterRecall(model: string, endpoint: string, name: string, k: number, dataset: string, limit?: string) {
    const extra = limit ? ['--limit', limit] : []
    const exact = await shipsOn(model, endpoint, join(dir, `${name}-exact`), dataset, extra)
    const filtered = await shipsOn(model, endpoint, join(dir, `${name}-atp${k}`), dataset, ['--prefilter', `atp:${k}`, ...extra])
    expect(filtered.prefilter?.scored).toHaveLength(k)
    expect(filtered.heads).toHaveLength(k)
    const exactMean = new Map(exact.heads.map((h) => [formatHead(h), h.mean_kl]))
    // The kept heads' KL is the exact one (other batch shapes: float32 noise only).
    for (const h of filtered.heads) expect(Math.abs(h.mean_kl - exactMean.get(formatHead(h))!)).toBeLessThanOrEqual(1e-4 * Math.abs(h.mean_kl) + 1e-6)
    const result = recall(exact.heads.slice(0, 10).map(formatHead), filtered.prefilter!.scored)
    console.log(`atp:${k} on ${name}: recall of the exact top-10 ${result.hits}/${result.of}, missed ${result.missed.join(' ') || 'none'}`)
    return result
  }

  async function shipsOn(model: string, endpoint: string, out: string, dataset: string, extra: string[]): Promise<ShipsSummary> {
    const result = await cli(['ships', '--model', model, '--dataset', dataset, '--out', out, '--endpoint', endpoint, '--json', ...extra])
    expect(result.exitCode, result.stderr).toBe(0)
    return JSON.parse(result.stdout) as ShipsSummary
  }

  it(`atp pre-filter: recall of the exact top-10 >= ${RECALL_FLOOR_RANDOM} on a random 4x8-head Llama (K = 10 of 32), >= ${RECALL_FLOOR_ORGANISM} on the organism (K = 10 of 16)`, async () => {
    const random = join(dir, 'random-llama')
    await execa(python, [resolve(repoRoot, 'bench/build_random_llama.py'), random, '--layers', '4', '--hidden', '128', '--heads', '8', '--kv-heads', '8', '--intermediate', '256', '--vocab', '2000', '--tokenizer-vocab', '1000'], {cwd: repoRoot})
    const r = await prefilterRecall(random, await sidecar(random, 'random'), 'random', 10, 'jailbreakbench', '20')
    expect(r.recall, JSON.stringify(r)).toBeGreaterThanOrEqual(RECALL_FLOOR_RANDOM)

    const organism = resolve(repoRoot, 'models/organism')
    const organismEndpoint = await sidecar(organism, 'organism')
    const o = await prefilterRecall(organism, organismEndpoint, 'organism', 10, 'jailbreakbench')
    expect(o.recall, JSON.stringify(o)).toBeGreaterThanOrEqual(RECALL_FLOOR_ORGANISM)

    // search --prefilter: ranked once on the clean model; every step chooses among the K kept heads.
    const out = join(dir, 'organism-search-atp4')
    const args = (steps: number) => ['search', '--model', organism, '--dataset', 'jailbreakbench', '--steps', String(steps), '--score', 'kl', '--out', out, '--endpoint', organismEndpoint]
    const search = await cli([...args(2), '--prefilter', 'atp:4', '--json'])
    expect(search.exitCode, search.stderr).toBe(0)
    const summary = JSON.parse(search.stdout) as SearchSummary
    expect(summary.prefilter?.scored).toHaveLength(4)
    expect(summary.group.map(formatHead)).toEqual(['L1H2', 'L2H0']) // the planted heads, as without a pre-filter
    const steps = readFileSync(join(out, 'search.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as {scores: unknown[]; settings: {prefilter: string}})
    expect(steps.map((l) => [l.scores.length, l.settings.prefilter])).toEqual([[4, 'atp:4'], [3, 'atp:4']])
    // The pre-filter is a stored setting: continuing with another one is refused.
    const other = await cli([...args(3), '--prefilter', 'atp:5'])
    expect(other.exitCode).toBe(2)
    expect(other.stderr).toContain('holds steps made with prefilter = "atp:4", but this run has prefilter = "atp:5"')
  })
})
