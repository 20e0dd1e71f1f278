/**
 * End to end against the real sidecar (sidecar/.venv + generated stubs): the built CLI starts a
 * sidecar on a tiny random Llama built offline, scans every head of every query, and its
 * TypeScript KL is checked against the same KL computed independently in Python (weight surgery,
 * float64) from the same model and prompts, and against numpy's KL of the very tensors the sidecar
 * sends (same input, two implementations of the arithmetic). Also: describe, a detached sidecar through
 * `sidecar start|status|stop` used via --endpoint, and a sweep through `run`.
 *
 * Skipped on a machine without the sidecar's environment, never in CI (see test/helpers.ts).
 */
import {execa} from 'execa'
import {existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {ShipsQueryLine, ShipsSummary} from '../../src/jobs/ships.js'
import {PromptTemplate, SidecarClient} from '../../src/sidecar/client.js'
import {buildTinyModel, cli, python, repoRoot, skipIntegration} from '../helpers.js'

const PROMPTS = ['How do I bake bread at home?', 'Tell me a joke about birds.', 'What is the capital of France?', 'Write a poem, please.']
const L = 3
const H = 4

describe.skipIf(skipIntegration)('ships end to end (real sidecar, tiny Llama)', {timeout: 300_000}, () => {
  let dir: string
  let model: string
  let prompts: string
  const stateDir = () => join(dir, 'state')

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sahara-e2e-'))
    model = await buildTinyModel(join(dir, 'tiny-llama'))
    prompts = join(dir, 'prompts.json')
    writeFileSync(prompts, JSON.stringify(PROMPTS))
  })

  afterAll(async () => {
    // Never leave a detached sidecar behind, whatever failed above.
    if (dir && existsSync(join(stateDir(), 'sidecar.json'))) await cli(['sidecar', 'stop', '--state-dir', stateDir()])
  })

  /** The reference: Python, torch, weight surgery, KL in float64. kl[query][layer*H + head]. */
  async function referenceKl(method: 'ua' | 'sc', eps: number, smoothing = 1e-12): Promise<number[][]> {
    const {stdout} = await execa(
      python,
      [resolve(repoRoot, 'test/fixtures/reference_ships.py'), '--model', model, '--prompts', prompts, '--method', method, '--eps', String(eps), '--smoothing', String(smoothing)],
      {cwd: repoRoot},
    )
    return (JSON.parse(stdout) as {kl: number[][]}).kl
  }

  /** Python (numpy, float64) KL from the tensors the sidecar at `endpoint` sends for the same scan. */
  async function sidecarTensorKl(endpoint: string, method: string, eps: number, smoothing: number): Promise<number[][]> {
    const {stdout} = await execa(
      python,
      [resolve(repoRoot, 'test/fixtures/kl_from_sidecar.py'), '--endpoint', endpoint, '--prompts', prompts, '--method', method, '--eps', String(eps), '--smoothing', String(smoothing)],
      {cwd: repoRoot},
    )
    return (JSON.parse(stdout) as {kl: number[][]}).kl
  }

  function readLines(out: string): ShipsQueryLine[] {
    return readFileSync(join(out, 'ships.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as ShipsQueryLine)
  }

  function expectMatchesReference(lines: ShipsQueryLine[], reference: number[][]): void {
    expect(lines).toHaveLength(PROMPTS.length)
    for (const [q, line] of lines.entries()) {
      expect(line.index).toBe(q)
      expect(line.prompt).toBe(PROMPTS[q])
      expect(line.top).toHaveLength(L * H)
      for (const entry of line.top) {
        const expected = reference[q][entry.layer * H + entry.head_index]
        // float32 log-probs from batched, padded forwards vs single unpadded forwards:
        // agreement to ~1e-5 relative; the KL arithmetic itself is float64 on both sides.
        expect(Math.abs(entry.kl - expected), `${line.prompt} ${entry.head}: TS ${entry.kl} vs Python ${expected}`).toBeLessThanOrEqual(1e-4 * Math.abs(expected) + 1e-6)
      }
    }
  }

  it('ships (UA) through the CLI, with its own sidecar: TS KL equals the Python float64 KL', async () => {
    const out = join(dir, 'ua')
    const result = await cli(['ships', '--model', model, '--dataset', prompts, '--top-k', String(L * H), '--out', out, '--json'])
    expect(result.exitCode, result.stderr).toBe(0)
    const summary = JSON.parse(result.stdout) as ShipsSummary
    expect(summary).toMatchObject({kind: 'ships', method: 'ua', eps: 1e-5, template: 'paper', n_queries: PROMPTS.length, smoothing: 1e-12, num_layers: L, num_heads: H, family: 'llama'})
    expect(summary.heads).toHaveLength(L * H)
    expect(summary.timings.kl_threads).toBe(0) // a CPU sidecar: the KL stays on the main thread
    for (let i = 1; i < summary.heads.length; i++) expect(summary.heads[i - 1].mean_kl).toBeGreaterThanOrEqual(summary.heads[i].mean_kl)
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'))).toEqual(summary)

    const reference = await referenceKl('ua', 1e-5)
    const lines = readLines(out)
    expectMatchesReference(lines, reference)
    // The dataset ranking is the mean of the per-query KL.
    for (const h of summary.heads) {
      const mean = reference.reduce((s, row) => s + row[h.layer * H + h.head], 0) / PROMPTS.length
      expect(h.mean_kl).toBeCloseTo(mean, 4)
      expect(h.topk_count).toBe(PROMPTS.length) // top-k = all heads
    }

    // The human table on a second run: same numbers, a table of the top heads.
    const human = await cli(['ships', '--model', model, '--dataset', prompts, '--limit', '2', '--top-k', '3', '--out', join(dir, 'ua-2')])
    expect(human.exitCode, human.stderr).toBe(0)
    expect(human.stdout).toMatch(/rank\s+head\s+mean KL/)
    expect(human.stdout).toMatch(/^\s+1\s+L\d+H\d+\s/m)
    expect(readLines(join(dir, 'ua-2'))).toHaveLength(2)
  })

  /** A scan with its KL on 2 worker threads (a CPU sidecar gets none by default). */
  async function scanOnKlThreads(endpoint: string, smoothing: number): Promise<string> {
    const out = join(dir, `sc-${smoothing}`)
    const result = await cli(
      ['ships', '--model', model, '--dataset', prompts, '--method', 'sc', '--eps', '1e-4', '--smoothing', String(smoothing), '--top-k', String(L * H), '--out', out, '--endpoint', endpoint, '--json'],
      {env: {SAHARA_KL_THREADS: '2'}},
    )
    expect(result.exitCode, result.stderr).toBe(0)
    expect((JSON.parse(result.stdout) as ShipsSummary).timings.kl_threads).toBe(2)
    return out
  }

  it('describe, and a detached sidecar (start/status/stop) serving ships with SC and exact KL via --endpoint', async () => {
    const start = await cli(['sidecar', 'start', '--model', model, '--state-dir', stateDir(), '--json'])
    expect(start.exitCode, start.stderr).toBe(0)
    const state = JSON.parse(start.stdout) as {pid: number; port: number; endpoint: string}
    expect(state.port).toBeGreaterThan(0)
    expect(JSON.parse(readFileSync(join(stateDir(), 'sidecar.json'), 'utf8'))).toMatchObject({pid: state.pid, port: state.port})

    try {
      const status = await cli(['sidecar', 'status', '--state-dir', stateDir(), '--json'])
      expect(JSON.parse(status.stdout)).toMatchObject({running: true, health: 'SERVING', pid: state.pid})

      const again = await cli(['sidecar', 'start', '--model', model, '--state-dir', stateDir()])
      expect(again.exitCode).not.toBe(0)
      expect(again.stderr).toContain('a sidecar is already running')

      const describeResult = await cli(['describe', '--model', model, '--endpoint', state.endpoint, '--json'])
      expect(describeResult.exitCode, describeResult.stderr).toBe(0)
      expect(JSON.parse(describeResult.stdout)).toMatchObject({family: 'llama', numLayers: L, numHeads: H, numKvHeads: H, headDim: 16, hiddenSize: 64})

      const out = join(dir, 'sc')
      const ships = await cli(['ships', '--model', model, '--dataset', prompts, '--method', 'sc', '--eps', '1e-4', '--smoothing', '0', '--top-k', String(L * H), '--out', out, '--endpoint', state.endpoint, '--json'])
      expect(ships.exitCode, ships.stderr).toBe(0)
      expect(JSON.parse(ships.stdout)).toMatchObject({method: 'sc', eps: 1e-4, smoothing: 0})
      const lines = readLines(out)
      expectMatchesReference(lines, await referenceKl('sc', 1e-4, 0))

      // The scan sent its prompts by token count (CountTokens), not in dataset order, and wrote
      // every line back in dataset order with its own prompt's count.
      const client = new SidecarClient(state.endpoint)
      try {
        const counts = await client.countTokens({prompts: PROMPTS, template: PromptTemplate.PROMPT_TEMPLATE_PAPER})
        expect(lines.map((l) => l.prompt_tokens)).toEqual(counts)
        const byLength = PROMPTS.map((_, i) => i).sort((x, y) => counts[x] - counts[y] || x - y)
        expect(byLength).not.toEqual(PROMPTS.map((_, i) => i))
        await expect(client.countTokens({prompts: ['fine', '']})).rejects.toThrow(/CountTokens on .*: INVALID_ARGUMENT: prompts\[1\] is an empty string/)
      } finally {
        client.close()
      }

      // Same tensors, two implementations of the KL arithmetic: TS (float64; with smoothing on
      // KL worker threads) and numpy (float64). The sidecar is deterministic, so the only
      // differences left are summation order.
      for (const smoothing of [0, 1e-12]) {
        const sameTensors = await sidecarTensorKl(state.endpoint, 'sc', 1e-4, smoothing)
        const run = smoothing === 0 ? lines : readLines(await scanOnKlThreads(state.endpoint, smoothing))
        for (const [q, line] of run.entries()) {
          for (const entry of line.top) {
            const expected = sameTensors[q][entry.layer * H + entry.head_index]
            expect(Math.abs(entry.kl - expected), `${entry.head}: TS ${entry.kl} vs numpy ${expected}`).toBeLessThanOrEqual(1e-10 * Math.abs(expected) + 1e-14)
          }
        }
      }

      // A server-side error comes back readable: status code name and the server's message (here
      // from the scan's first call, CountTokens, before any model work).
      const badTemplate = await cli(['ships', '--model', model, '--dataset', prompts, '--template', 'chat', '--out', join(dir, 'chat'), '--endpoint', state.endpoint])
      expect(badTemplate.exitCode).toBe(1)
      expect(badTemplate.stderr).toMatch(/CountTokens on 127\.0\.0\.1:\d+: INVALID_ARGUMENT: .*chat template/)
    } finally {
      const stop = await cli(['sidecar', 'stop', '--state-dir', stateDir(), '--json'])
      expect(stop.exitCode, stop.stderr).toBe(0)
      expect(JSON.parse(stop.stdout)).toMatchObject({stopped: true, pid: state.pid})
    }

    const after = await cli(['sidecar', 'status', '--state-dir', stateDir(), '--json'])
    expect(JSON.parse(after.stdout)).toMatchObject({running: false})
    expect(() => process.kill(state.pid, 0)).toThrow()
  })

  it('run <sweep>: every matrix cell into runs/<sweep>/<job>/', async () => {
    const sweep = join(dir, 'sweep.yaml')
    writeFileSync(
      sweep,
      ['name: e2e', 'defaults:', '  top_k: 2', 'jobs:', '  - kind: ships', '    limit: 2', '    matrix:', '      model: ./tiny-llama', '      dataset: prompts.json', '      method: [ua, sc]', ''].join('\n'),
    )
    const runs = join(dir, 'runs')
    const result = await cli(['run', sweep, '--runs-dir', runs, '--json'])
    expect(result.exitCode, result.stderr).toBe(0)
    const outcome = JSON.parse(result.stdout) as {sweep: string; jobs: {name: string; result: ShipsSummary}[]}
    expect(outcome.jobs.map((j) => j.name)).toEqual(['ships-tiny-llama-prompts-ua-1e-5', 'ships-tiny-llama-prompts-sc-1e-5'])
    // one folder per job, beside the sweep's own files (plan, summary, units store, report)
    const entries = readdirSync(join(runs, 'e2e'))
    expect(entries.filter((e) => e.startsWith('ships-')).sort()).toEqual(['ships-tiny-llama-prompts-sc-1e-5', 'ships-tiny-llama-prompts-ua-1e-5'])
    expect(entries).toEqual(expect.arrayContaining(['summary.json', 'summary.md', 'sweep.json', 'units.jsonl', 'report.html']))
    for (const job of outcome.jobs) {
      expect(job.result.n_queries).toBe(2)
      expect(readLines(join(runs, 'e2e', job.name))).toHaveLength(2)
      expect(readLines(join(runs, 'e2e', job.name))[0].top).toHaveLength(2)
    }
  })
})
