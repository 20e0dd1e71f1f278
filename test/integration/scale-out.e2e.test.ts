/**
 * Issue 5 with real sidecars over real gRPC, on the organism: a sweep spread over three sidecars
 * on loopback survives one being killed mid-run (its units re-queued; the sidecar, restarted on
 * its port, is used again) and gives results identical to a one-sidecar run; a CLI killed with
 * SIGKILL mid-sweep resumes from the units store, recomputing none of the stored units.
 */
import {execa} from 'execa'
import {existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {UnitStore} from '../../src/orchestration/store.js'
import {type RunningSidecar, startSidecar} from '../../src/sidecar/process.js'
import {cli, repoRoot, skipIntegration} from '../helpers.js'

process.env.OMP_NUM_THREADS = '1' // every sidecar computes the same way (and the 2 cores are shared)

const organism = resolve(repoRoot, 'models', 'organism')

/** Small units, so the work spreads over the sidecars and lasts long enough to kill one. */
const SWEEP = `name: scale
defaults:
  matrix: {model: organism, dataset: jailbreakbench, method: ua}
jobs:
  - kind: ships
    prompts_per_unit: 4
  - kind: asr
    heads: [L1H2, random:2]
    seed: [1, 2, 3, 4, 5, 6]
    max_new_tokens: 16
    prompts_per_unit: 4
`

const dir = mkdtempSync(join(tmpdir(), 'sahara-scale-'))
const sweepFile = join(dir, 'scale.yaml')
writeFileSync(sweepFile, SWEEP)
const started: RunningSidecar[] = []

afterAll(async () => {
  await Promise.all(started.map((s) => s.stop().catch(() => {})))
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Every job's results, without timings or the sidecar that served it. */
function results(runs: string): Record<string, unknown> {
  const sweep = join(runs, 'scale')
  const out: Record<string, unknown> = {}
  for (const job of readdirSync(sweep).filter((f) => existsSync(join(sweep, f, 'summary.json'))).sort()) {
    const summary = JSON.parse(readFileSync(join(sweep, job, 'summary.json'), 'utf8')) as Record<string, unknown>
    const files = ['ships.jsonl', 'replies.jsonl'].filter((f) => existsSync(join(sweep, job, f))).map((f) => readFileSync(join(sweep, job, f), 'utf8'))
    out[job] = {heads: summary.heads, asr: summary.asr, flip: summary.flip_rate, files}
  }

  return out
}

/** The records of a units store, in the order stored (the header skipped). */
function storedUnits(runs: string): {endpoint?: string}[] {
  const lines = readFileSync(join(runs, 'scale', 'units.jsonl'), 'utf8').trim().split('\n').slice(1)
  return lines.map((l) => JSON.parse(l) as {endpoint?: string})
}

const countLines = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').length - 2 : 0)

describe.skipIf(skipIntegration)('a sweep over several sidecars, and crashes', {timeout: 900_000}, () => {
  let single: Record<string, unknown>

  it('three sidecars, one killed mid-run and restarted: same results as one sidecar, the restarted one used again', async () => {
    const sidecars = await Promise.all([0, 1, 2].map(() => startSidecar({model: organism})))
    started.push(...sidecars)
    const [a, b, c] = sidecars

    const one = join(dir, 'runs-one')
    const reference = await cli(['run', sweepFile, '--runs-dir', one, '--endpoint', a.endpoint], {timeoutMs: 600_000})
    expect(reference.exitCode, reference.stderr).toBe(0)
    single = results(one)
    expect(Object.keys(single)).toHaveLength(8)

    const three = join(dir, 'runs-three')
    const run = cli(['run', sweepFile, '--runs-dir', three, '--endpoint', `${a.endpoint},${b.endpoint},${c.endpoint}`], {timeoutMs: 600_000})
    const units = join(three, 'scale', 'units.jsonl')
    while (countLines(units) < 8) await sleep(100) // some units done, on every sidecar
    // The CLI is paused while b is killed and restarted: on a loaded machine a restart (loading
    // torch) can outlast the rest of the run, and then the restarted sidecar could not be seen
    // serving again. Paused, the CLI still finds b's in-flight units broken when it resumes.
    process.kill(run.pid!, 'SIGSTOP')
    process.kill(b.pid, 'SIGKILL')
    const killedAt = countLines(units)
    await sleep(500)
    const restarted = await startSidecar({model: organism, port: b.port})
    started.push(restarted)
    process.kill(run.pid!, 'SIGCONT')
    const result = await run
    expect(result.exitCode, result.stderr).toBe(0)
    expect(result.stderr).toContain(`endpoint ${b.endpoint} dropped`)
    expect(result.stderr).toContain(`endpoint ${b.endpoint} is serving again`)
    expect(results(three)).toEqual(single)

    const records = storedUnits(three)
    const byB = records.map((r, i) => ({i, b: r.endpoint === b.endpoint})).filter((r) => r.b)
    expect(byB.some((r) => r.i < killedAt)).toBe(true) // b worked before it was killed ...
    expect(byB.some((r) => r.i > killedAt)).toBe(true) // ... and again after its restart
    expect(new Set(records.map((r) => r.endpoint)).size).toBe(3)
  })

  it('the CLI killed with SIGKILL mid-sweep: the re-run recomputes no stored unit and ends identical', async () => {
    const runs = join(dir, 'runs-killed')
    const endpoint = started[0].endpoint
    const child = execa(resolve(repoRoot, 'bin', 'run.js'), ['run', sweepFile, '--runs-dir', runs, '--endpoint', endpoint], {reject: false, env: {NO_COLOR: '1'}})
    const units = join(runs, 'scale', 'units.jsonl')
    while (countLines(units) < 12) await sleep(50)
    child.kill('SIGKILL')
    await child

    const store = UnitStore.open(units)
    const stored = store.stats.loaded
    store.close()
    expect(stored).toBeGreaterThanOrEqual(12)

    const rerun = await cli(['run', sweepFile, '--runs-dir', runs, '--endpoint', endpoint, '--json'], {timeoutMs: 600_000})
    expect(rerun.exitCode, rerun.stderr).toBe(0)
    const outcome = JSON.parse(rerun.stdout) as {units: {reused: number; computed: number}}
    const total = countLines(join(dir, 'runs-one', 'scale', 'units.jsonl')) // distinct units of the sweep
    expect(outcome.units.computed).toBe(total - stored) // no stored unit computed again
    expect(countLines(units)).toBe(total) // and none stored twice
    expect(results(runs)).toEqual(single)
  })

  it('a changed job is named and recomputed, the others reused; a malformed sweep stops before touching stored results', async () => {
    const runs = join(dir, 'runs-killed')
    const units = join(runs, 'scale', 'units.jsonl')
    const before = readFileSync(units, 'utf8')
    const changed = join(dir, 'scale-changed.yaml')
    writeFileSync(changed, SWEEP.replace('max_new_tokens: 16', 'max_new_tokens: 12'))
    const rerun = await cli(['run', changed, '--runs-dir', runs, '--endpoint', started[0].endpoint, '--json'], {timeoutMs: 600_000})
    expect(rerun.exitCode, rerun.stderr).toBe(0)
    expect(rerun.stderr).toContain('resuming')
    expect(rerun.stderr).toContain('1 jobs unchanged (their stored units are reused), 7 changed, 0 new')
    expect(rerun.stderr).toContain('changed since the last run (what the change affects is computed again): asr-organism-jailbreakbench-ua-1e-5-L1H2')
    const outcome = JSON.parse(rerun.stdout) as {units: {reused: number; computed: number}; jobs: {name: string; units: {reused: number; computed: number}}[]}
    expect(outcome.jobs[0].units).toEqual({reused: 25, computed: 0}) // the unchanged ships job
    expect(readFileSync(units, 'utf8').startsWith(before)).toBe(true) // appended to, never rewritten

    const stored = readFileSync(units, 'utf8')
    writeFileSync(changed, `${SWEEP}  - kind: asr\n    heads: L9H9\n  bad: [\n`)
    const broken = await cli(['run', changed, '--runs-dir', runs, '--endpoint', started[0].endpoint])
    expect(broken.exitCode).toBe(2)
    expect(broken.stderr).toContain(`${changed}:`)
    expect(readFileSync(units, 'utf8')).toBe(stored)
  })
})
