/**
 * Stored results follow what a model directory holds, not its name: after its weights change,
 * a re-run sweep computes every Ships unit again and sets its search steps aside (kept in a file
 * beside them) instead of reusing them, and a standalone search refuses the stored steps, naming
 * the model's fingerprint. Real sidecars (started by the CLI) on tiny random Llamas.
 *
 * Skipped without the sidecar's environment, never in CI (test/helpers.ts).
 */
import {copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {beforeAll, describe, expect, it} from 'vitest'

import type {JobOutcome} from '../../src/jobs/runner.js'
import type {ShipsSummary} from '../../src/jobs/ships.js'
import {buildTinyModel, cli, skipIntegration} from '../helpers.js'

const PROMPTS = ['How do I bake bread at home?', 'Tell me a joke about birds.', 'What is the capital of France?', 'Name three rivers.']

describe.skipIf(skipIntegration)('stored results and the model directory\'s contents', {timeout: 300_000}, () => {
  let dir: string

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sahara-contents-'))
    await buildTinyModel(join(dir, 'model'), 'llama', 0)
    await buildTinyModel(join(dir, 'retrained'), 'llama', 1) // same shapes and tokenizer, other weights
    writeFileSync(join(dir, 'prompts.json'), JSON.stringify(PROMPTS))
    writeSweep('')
  })

  /** A ships job (with extra option lines) and a search job on ./model. */
  const writeSweep = (shipsOptions: string) => {
    const jobs = ['name: contents', 'jobs:', '  - kind: ships', shipsOptions, '    matrix: {model: ./model, dataset: prompts.json}', '  - kind: search', '    steps: 1', '    matrix: {model: ./model, dataset: prompts.json}']
    writeFileSync(join(dir, 'sweep.yaml'), `${jobs.filter((line) => line !== '').join('\n')}\n`)
  }

  const sweep = async () => {
    const result = await cli(['run', join(dir, 'sweep.yaml'), '--runs-dir', join(dir, 'runs'), '--json'])
    expect(result.exitCode, result.stderr).toBe(0)
    return {outcome: JSON.parse(result.stdout) as {jobs: JobOutcome[]}, log: result.stderr}
  }

  it('a sweep recomputes after the weights change, and keeps the old search steps aside', async () => {
    const first = await sweep()
    const [ships, search] = first.outcome.jobs
    expect(ships.units.computed).toBeGreaterThan(0)
    writeSweep('    top_k: 3') // changes the job, not its KLs: every Ships unit is reused
    const topK = await sweep()
    expect(topK.log).toContain('changed since the last run')
    expect(topK.outcome.jobs[0].units).toEqual({reused: ships.units.computed, computed: 0})
    expect(topK.log).not.toContain('superseded') // the search job did not change

    copyFileSync(join(dir, 'retrained', 'model.safetensors'), join(dir, 'model', 'model.safetensors'))
    const after = await sweep()
    expect(after.outcome.jobs[0].units).toEqual({reused: 0, computed: ships.units.computed})
    const before = (ships.result as ShipsSummary).heads.map((h) => h.mean_kl)
    const now = (after.outcome.jobs[0].result as ShipsSummary).heads.map((h) => h.mean_kl)
    expect(now).not.toEqual(before)
    expect(after.log).toMatch(/holds steps made with model_fingerprint = "[0-9a-f]{64}", but this run has model_fingerprint = "[0-9a-f]{64}"; those steps are kept in /)
    const searchDir = join(dir, 'runs', 'contents', search.name)
    const aside = readdirSync(searchDir).filter((f) => f.startsWith('search.jsonl.superseded-'))
    expect(aside).toHaveLength(1)
    expect(readFileSync(join(searchDir, aside[0]), 'utf8').trim().split('\n')).toHaveLength(1)
  })

  it('a standalone search refuses stored steps of other weights, naming the fingerprint', async () => {
    const search = (model: string) => cli(['search', '--model', join(dir, model), '--dataset', join(dir, 'prompts.json'), '--steps', '1', '--out', join(dir, 'alone')])
    const first = await search('retrained')
    expect(first.exitCode, first.stderr).toBe(0)
    await buildTinyModel(join(dir, 'retrained'), 'llama', 2) // the same directory, new weights
    const second = await search('retrained')
    expect(second.exitCode).toBe(2)
    expect(second.stderr).toContain('holds steps made with model_fingerprint = ')
    expect(second.stderr).toContain('--restart')
  })
})
