/**
 * `sahara search` end to end against the real sidecar on a tiny random Llama (3 layers × 4 heads):
 * the JSON and the stored tables, resuming after step k (only the missing steps computed, same
 * group as an uninterrupted run), a torn last line skipped, changed settings refused, --restart,
 * the kl score against query-level ships (over every token and over a support set), and a sweep
 * job of kind search.
 *
 * One detached sidecar serves every run (--endpoint). Skipped without the sidecar's environment,
 * never in CI (test/helpers.ts).
 */
import {existsSync, mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {SearchSummary} from '../../src/jobs/search.js'
import type {StepLine} from '../../src/jobs/search-steps.js'
import type {ShipsSummary} from '../../src/jobs/ships.js'
import {buildTinyModel, cli, skipIntegration} from '../helpers.js'

const PROMPTS = ['How do I bake bread at home?', 'Tell me a joke about birds.', 'What is the capital of France?', 'Write a poem, please.', 'Name three rivers.', 'Why is the sky blue?']
const L = 3
const H = 4

describe.skipIf(skipIntegration)('search end to end (real sidecar, tiny Llama)', {timeout: 300_000}, () => {
  let dir: string
  let model: string
  let prompts: string
  let endpoint: string
  const stateDir = () => join(dir, 'state')
  let full: SearchSummary

  const search = (out: string, ...args: string[]) => cli(['search', '--model', model, '--dataset', prompts, '--endpoint', endpoint, '--out', join(dir, out), ...args])
  const readSteps = (out: string): StepLine[] =>
    readFileSync(join(dir, out, 'search.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StepLine)

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sahara-search-'))
    model = await buildTinyModel(join(dir, 'tiny-llama'))
    prompts = join(dir, 'prompts.json')
    writeFileSync(prompts, JSON.stringify(PROMPTS))
    const start = await cli(['sidecar', 'start', '--model', model, '--state-dir', stateDir(), '--json'])
    expect(start.exitCode, start.stderr).toBe(0)
    endpoint = (JSON.parse(start.stdout) as {endpoint: string}).endpoint
  })

  afterAll(async () => {
    if (dir && existsSync(join(stateDir(), 'sidecar.json'))) await cli(['sidecar', 'stop', '--state-dir', stateDir()])
  })

  it('--json: the group, one entry per step, and every step\'s full table stored', async () => {
    const result = await search('full', '--steps', '3', '--json')
    expect(result.exitCode, result.stderr).toBe(0)
    full = JSON.parse(result.stdout) as SearchSummary
    expect(full).toMatchObject({kind: 'search', method: 'ua', eps: 1e-5, template: 'paper', score: 'angles', r_main: 1, centre: false, n_queries: PROMPTS.length, resumed_steps: 0, computed_steps: [1, 2, 3]})
    expect(full.group).toHaveLength(3)
    expect(new Set(full.group.map((h) => `${h.layer}.${h.head}`)).size).toBe(3)
    expect(full.steps.map((s) => s.step)).toEqual([1, 2, 3])
    for (const [i, s] of full.steps.entries()) {
      expect(s.head).toEqual(full.group[i])
      expect(s.score_deg).toBe(s.score)
      expect(s.score_deg).toBeGreaterThanOrEqual(0)
      expect(s.score_deg).toBeLessThanOrEqual(90)
    }

    expect(JSON.parse(readFileSync(join(dir, 'full', 'summary.json'), 'utf8'))).toEqual(full)
    const lines = readSteps('full')
    expect(lines).toHaveLength(3)
    for (const [i, line] of lines.entries()) {
      expect(line.step).toBe(i + 1)
      expect(line.group_before).toEqual(full.group.slice(0, i))
      expect(line.chosen).toEqual(full.group[i])
      // every head not yet in the group, once, with a finite score; the chosen one is the argmax
      expect(line.scores).toHaveLength(L * H - i)
      const names = new Set(line.scores.map((e) => `${e.layer}.${e.head}`))
      expect(names.size).toBe(L * H - i)
      for (const g of line.group_before) expect(names.has(`${g.layer}.${g.head}`)).toBe(false)
      const best = Math.max(...line.scores.map((e) => e.score_deg as number))
      expect(line.scores.find((e) => e.layer === line.chosen.layer && e.head === line.chosen.head)?.score_deg).toBe(best)
      expect(line.settings).toMatchObject({score: 'angles', r_main: 1, centre: false, n_queries: PROMPTS.length})
    }
  })

  it('resumes: --steps 1, then --steps 3 computes only steps 2 and 3, and ends with the same group', async () => {
    const first = await search('resume', '--steps', '1', '--json')
    expect(first.exitCode, first.stderr).toBe(0)
    expect((JSON.parse(first.stdout) as SearchSummary).group).toEqual(full.group.slice(0, 1))

    const second = await search('resume', '--steps', '3', '--json')
    expect(second.exitCode, second.stderr).toBe(0)
    const summary = JSON.parse(second.stdout) as SearchSummary
    expect(second.stderr).toContain('resuming after step 1')
    expect(second.stderr).not.toContain('step 1/3')
    expect(second.stderr).toContain('step 2/3')
    expect(summary.resumed_steps).toBe(1)
    expect(summary.computed_steps).toEqual([2, 3])
    // one request for the clean base, one per computed step (12 heads fit one request)
    expect(summary.requests).toBe(3)
    expect(summary.group).toEqual(full.group)
    const lines = readSteps('resume')
    expect(lines).toHaveLength(3)
    for (const [i, line] of lines.entries()) {
      for (const [k, e] of line.scores.entries()) expect(e.score_deg).toBeCloseTo(readSteps('full')[i].scores[k].score_deg as number, 6)
    }

    // Asking for fewer steps than stored computes nothing.
    const fewer = await search('resume', '--steps', '2', '--json')
    expect(fewer.exitCode, fewer.stderr).toBe(0)
    const readBack = JSON.parse(fewer.stdout) as SearchSummary
    expect(readBack).toMatchObject({group: full.group.slice(0, 2), computed_steps: [], requests: 0})
    // nothing computed, yet the clean representation's facts are reported, as the steps kept them
    expect(readBack.clean_representation?.singular_values).toHaveLength(full.clean_representation!.singular_values.length)
    expect(readBack.clean_representation!.mean_energy_share).toBeCloseTo(full.clean_representation!.mean_energy_share, 6)
  })

  it('--prefilter resumed: when attribution now keeps other heads, the stored steps\' pool is kept (with a warning)', async () => {
    const first = await search('atp', '--steps', '1', '--prefilter', 'atp:4', '--json')
    expect(first.exitCode, first.stderr).toBe(0)
    const pool = (JSON.parse(first.stdout) as SearchSummary).prefilter!.scored
    expect(pool).toHaveLength(4)
    // Stand in for a host whose attribution ranks the 4th head differently: swap a head that was
    // not chosen for one outside the pool, scored below the chosen one.
    const [line] = readSteps('atp')
    const outside = Array.from({length: L * H}, (_, i) => `L${Math.floor(i / H)}H${i % H}`).find((h) => !pool.includes(h))!
    const swapped = line.scores.findIndex((e) => e.layer !== line.chosen.layer || e.head !== line.chosen.head)
    line.scores[swapped] = {layer: Number(outside[1]), head: Number(outside[3]), score_deg: 0}
    writeFileSync(join(dir, 'atp', 'search.jsonl'), `${JSON.stringify(line)}\n`)
    const resumed = await search('atp', '--steps', '2', '--prefilter', 'atp:4', '--json')
    expect(resumed.exitCode, resumed.stderr).toBe(0)
    expect(resumed.stderr).toContain(`warning: the pre-filter now keeps ${pool.join(', ')}; the stored steps chose from`)
    const step2 = readSteps('atp')[1]
    const expected = line.scores.filter((e) => e.layer !== line.chosen.layer || e.head !== line.chosen.head).map((e) => `L${e.layer}H${e.head}`)
    expect(step2.scores.map((e) => `L${e.layer}H${e.head}`).sort()).toEqual(expected.sort())
    expect(expected).toContain(outside)
    // read back whole: the pre-filter as the last run kept it, though nothing was recomputed
    const again = await search('atp', '--steps', '2', '--prefilter', 'atp:4', '--json')
    expect(again.exitCode, again.stderr).toBe(0)
    const summary = JSON.parse(again.stdout) as SearchSummary
    expect(summary).toMatchObject({computed_steps: [], requests: 0})
    expect(summary.prefilter?.scored.slice().sort()).toEqual(line.scores.map((e) => `L${e.layer}H${e.head}`).sort())
  })

  it('a torn last line (a crash mid-write) is skipped with a warning and recomputed', async () => {
    const lines = readFileSync(join(dir, 'full', 'search.jsonl'), 'utf8').split('\n')
    const torn = join(dir, 'torn')
    await search('torn', '--steps', '1') // creates the folder
    writeFileSync(join(torn, 'search.jsonl'), `${lines[0]}\n${lines[1]}\n${lines[2].slice(0, 200)}`)
    const result = await search('torn', '--steps', '3', '--json')
    expect(result.exitCode, result.stderr).toBe(0)
    expect(result.stderr).toMatch(/warning: .*search\.jsonl: ignoring an unterminated last line/)
    const summary = JSON.parse(result.stdout) as SearchSummary
    expect(summary.computed_steps).toEqual([3])
    expect(summary.group).toEqual(full.group)
    expect(readSteps('torn')).toHaveLength(3)
  })

  it('refuses stored steps made with other settings (naming the field), unless --restart', async () => {
    const rMain = await search('full', '--steps', '3', '--r-main', '2')
    expect(rMain.exitCode).toBe(2)
    expect(rMain.stderr).toContain('holds steps made with r_main = 1, but this run has r_main = 2')
    expect(rMain.stderr).toContain('--restart')
    const limit = await search('full', '--steps', '3', '--limit', '4')
    expect(limit.exitCode).toBe(2)
    expect(limit.stderr).toMatch(/holds steps made with dataset_sha256 = /)
    const method = await search('full', '--steps', '3', '--method', 'sc')
    expect(method.exitCode).toBe(2)
    expect(method.stderr).toContain('method = "ua", but this run has method = "sc"')

    // A middle line that is not a step record is not a torn write: refused.
    const bad = readFileSync(join(dir, 'full', 'search.jsonl'), 'utf8').split('\n')
    writeFileSync(join(dir, 'bad.jsonl'), '')
    await search('bad', '--steps', '1')
    writeFileSync(join(dir, 'bad', 'search.jsonl'), `${bad[0]}\n{oops\n${bad[2]}\n`)
    const corrupt = await search('bad', '--steps', '3')
    expect(corrupt.exitCode).toBe(2)
    expect(corrupt.stderr).toContain('line 2 is not a valid step record')

    const restart = await search('full', '--steps', '2', '--r-main', '2', '--centre', '--restart', '--json')
    expect(restart.exitCode, restart.stderr).toBe(0)
    const summary = JSON.parse(restart.stdout) as SearchSummary
    expect(summary).toMatchObject({r_main: 2, centre: true, angle_sum: 'nested', computed_steps: [1, 2], resumed_steps: 0})
    expect(readSteps('full')).toHaveLength(2)

    // r_main above the rank of the clean matrix: a usage error before any scoring.
    const tooMany = await search('big', '--steps', '1', '--r-main', '6', '--centre')
    expect(tooMany.exitCode).toBe(2)
    expect(tooMany.stderr).toContain('r_main = 6 exceeds the rank 5 of the clean representation matrix')
  })

  it('--score kl: step 1 is the query-level Ships ranking (mean KL), and the human output has one line per step', async () => {
    const result = await search('kl', '--steps', '2', '--score', 'kl', '--json')
    expect(result.exitCode, result.stderr).toBe(0)
    const summary = JSON.parse(result.stdout) as SearchSummary
    expect(summary).toMatchObject({score: 'kl', r_main: null, centre: null, smoothing: 1e-12})
    expect(summary.steps[0].mean_kl).toBe(summary.steps[0].score)
    const ships = await cli(['ships', '--model', model, '--dataset', prompts, '--endpoint', endpoint, '--out', join(dir, 'ships'), '--json'])
    expect(ships.exitCode, ships.stderr).toBe(0)
    const ranked = (JSON.parse(ships.stdout) as ShipsSummary).heads
    expect(summary.group[0]).toEqual({layer: ranked[0].layer, head: ranked[0].head})
    for (const e of readSteps('kl')[0].scores) {
      const h = ranked.find((r) => r.layer === e.layer && r.head === e.head)!
      expect(Math.abs((e.mean_kl as number) - h.mean_kl)).toBeLessThanOrEqual(1e-4 * h.mean_kl + 1e-9)
    }

    const human = await search('kl', '--steps', '2', '--score', 'kl')
    expect(human.exitCode, human.stderr).toBe(0)
    expect(human.stdout).toMatch(/^step 1 {2}L\dH\d +mean KL \S+ {3}next: L\dH\d .*\(stored\)$/m)
    expect(human.stdout).toMatch(/^step 2 {2}L\dH\d /m)
    expect(human.stdout).toContain('group: ')
  })

  it('--score kl --logprob-support K: ships\' support-set KLs, each a lower bound of the full one; K recorded and checked on resume', async () => {
    const K = 8
    const result = await search('kl-support', '--steps', '2', '--score', 'kl', '--logprob-support', String(K), '--json')
    expect(result.exitCode, result.stderr).toBe(0)
    const summary = JSON.parse(result.stdout) as SearchSummary
    expect(summary).toMatchObject({score: 'kl', logprob_support: K})
    const ships = await cli(['ships', '--model', model, '--dataset', prompts, '--endpoint', endpoint, '--out', join(dir, 'ships-support'), '--logprob-support', String(K), '--json'])
    expect(ships.exitCode, ships.stderr).toBe(0)
    const ranked = (JSON.parse(ships.stdout) as ShipsSummary).heads
    const full = await search('kl', '--steps', '1', '--score', 'kl', '--json') // every token (stored by the test above, or computed now)
    expect(full.exitCode, full.stderr).toBe(0)
    const fullKl = new Map(readSteps('kl')[0].scores.map((e) => [`${e.layer}.${e.head}`, e.mean_kl as number]))
    const steps = readSteps('kl-support')
    expect(steps[0].settings.logprob_support).toBe(K)
    let below = 0
    for (const e of steps[0].scores) {
      const h = ranked.find((r) => r.layer === e.layer && r.head === e.head)!
      expect(Math.abs((e.mean_kl as number) - h.mean_kl)).toBeLessThanOrEqual(1e-4 * h.mean_kl + 1e-9)
      const exact = fullKl.get(`${e.layer}.${e.head}`)!
      expect(e.mean_kl as number).toBeLessThanOrEqual(exact * (1 + 1e-4) + 1e-9)
      if ((e.mean_kl as number) < exact * (1 - 1e-3)) below++
    }

    expect(below).toBeGreaterThan(0) // the support really is smaller than the vocabulary
    const other = await search('kl-support', '--steps', '2', '--score', 'kl', '--logprob-support', '4')
    expect(other.exitCode).toBe(2)
    expect(other.stderr).toContain(`holds steps made with logprob_support = ${K}, but this run has logprob_support = 4`)
    const angles = await search('angles-support', '--steps', '1', '--logprob-support', '4')
    expect(angles.exitCode).toBe(2)
    expect(angles.stderr).toContain('--logprob-support applies to --score kl only')
  })

  it('run <sweep>: a search job', async () => {
    const sweep = join(dir, 'sweep.yaml')
    writeFileSync(sweep, ['name: s', 'jobs:', '  - kind: search', '    steps: 1', '    centre: mean', '    matrix:', '      model: ./tiny-llama', '      dataset: prompts.json', ''].join('\n'))
    const human = await cli(['run', sweep, '--runs-dir', join(dir, 'runs-human'), '--endpoint', endpoint])
    expect(human.exitCode, human.stderr).toBe(0)
    expect(human.stdout).toMatch(/^search-tiny-llama-prompts-ua-1e-5-centred: group L\dH\d \(score angles, r_main 1, centred\)$/m)
    const result = await cli(['run', sweep, '--runs-dir', join(dir, 'runs'), '--endpoint', endpoint, '--json'])
    expect(result.exitCode, result.stderr).toBe(0)
    const outcome = JSON.parse(result.stdout) as {jobs: {name: string; result: SearchSummary}[]}
    expect(outcome.jobs.map((j) => j.name)).toEqual(['search-tiny-llama-prompts-ua-1e-5-centred'])
    expect(outcome.jobs[0].result).toMatchObject({kind: 'search', centre: true})
    expect(outcome.jobs[0].result.group).toHaveLength(1)
  })

  it('run <sweep>: a changed job that fails leaves the finished ones in the summary, and the error names the job', async () => {
    const sweep = join(dir, 'two.yaml')
    // the search first: when it fails, the ships job after it does not run again, yet stays listed
    const jobs = (steps: number) => ['name: two', 'jobs:', '  - kind: search', `    steps: ${steps}`, '    matrix: {model: ./tiny-llama, dataset: prompts.json}', '  - kind: ships', '    matrix: {model: ./tiny-llama, dataset: prompts.json}', '']
    writeFileSync(sweep, jobs(1).join('\n'))
    const runs = join(dir, 'runs-two')
    const first = await cli(['run', sweep, '--runs-dir', runs, '--endpoint', endpoint])
    expect(first.exitCode, first.stderr).toBe(0)
    const listed = () => (JSON.parse(readFileSync(join(runs, 'two', 'summary.json'), 'utf8')) as {jobs: {name: string}[]}).jobs.map((j) => j.name)
    expect(listed()).toEqual(['search-tiny-llama-prompts-ua-1e-5', 'ships-tiny-llama-prompts-ua-1e-5'])

    writeFileSync(sweep, jobs(L * H + 1).join('\n')) // more steps than the model has heads: known only at run time
    const failed = await cli(['run', sweep, '--runs-dir', runs, '--endpoint', endpoint])
    expect(failed.exitCode).not.toBe(0)
    expect(failed.stderr).toContain(`two.yaml: job search-tiny-llama-prompts-ua-1e-5: --steps ${L * H + 1} exceeds the model's ${L * H} heads`)
    expect(listed()).toEqual(['ships-tiny-llama-prompts-ua-1e-5'])
  })
})
