import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {planSearch} from '../../src/jobs/search-scoring.js'
import {type SearchSettings, type StepLine, chooseHead, datasetDigest, loadStoredSteps, stepResult} from '../../src/jobs/search-steps.js'

const settings: SearchSettings = {
  model: '/m',
  dataset: 'd',
  dataset_sha256: datasetDigest(['a', 'b']),
  n_queries: 2,
  method: 'ua',
  eps: 1e-5,
  template: 'paper',
  score: 'angles',
  r_main: 1,
  centre: false,
  angle_sum: 'nested',
  smoothing: null,
  logprob_support: null,
  prefilter: null,
}

function line(step: number, chosen: {layer: number; head: number}, before: {layer: number; head: number}[]): StepLine {
  return {step, group_before: before, scores: [{...chosen, score_deg: 1}], chosen, settings, requests: 1, seconds: 0, finished_at: ''}
}

describe('search helpers', () => {
  it('argmax with ties to the lowest (layer, head); NaN never wins', () => {
    const h = (layer: number, head: number, score: number) => ({head: {layer, head}, score})
    expect(chooseHead([h(2, 0, 5), h(1, 3, 5), h(1, 1, 5), h(0, 0, 4)]).best.head).toEqual({layer: 1, head: 1})
    const {best, runnerUp} = chooseHead([h(0, 0, Number.NaN), h(0, 1, 0.5), h(3, 3, 0.7)])
    expect(best.head).toEqual({layer: 3, head: 3})
    expect(runnerUp?.head).toEqual({layer: 0, head: 1})
  })

  it('a stored step reports its chosen head with that head\'s own score, an infinite one included', () => {
    const kl = (scores: StepLine['scores'], chosen = {layer: 0, head: 1}): StepLine => ({...line(1, chosen, []), scores, settings: {...settings, score: 'kl'}})
    // JSON has no Infinity: stored as "Infinity" (encodeFloat), read back as a number
    const infinite = stepResult(JSON.parse(JSON.stringify(kl([{layer: 0, head: 0, mean_kl: 0.5}, {layer: 0, head: 1, mean_kl: 'Infinity'}]))) as StepLine, 'kl')
    expect(infinite).toMatchObject({head: {layer: 0, head: 1}, score: Number.POSITIVE_INFINITY, runner_up: {layer: 0, head: 0, score: 0.5}})
    // lines written before that rule hold null: the chosen head keeps its place, its score unknown
    const old = stepResult(kl([{layer: 0, head: 0, mean_kl: 0.5}, {layer: 0, head: 1, mean_kl: null}, {layer: 1, head: 0, mean_kl: 0.2}]), 'kl')
    expect(old.head).toEqual({layer: 0, head: 1})
    expect(old.score).toBeNaN()
    expect(old.runner_up).toEqual({layer: 0, head: 0, score: 0.5})
  })

  it('plans bounded requests: heads per group, prompts per request', () => {
    expect(planSearch(16, 100, 128, 2 ** 25, true)).toEqual({groupSize: 16, promptsPerRequest: 100})
    // Llama-2-7b-like: 100 prompts x 4096 hidden per head -> 81 heads per group, all prompts at once
    expect(planSearch(1024, 100, 4096, 2 ** 25, true)).toEqual({groupSize: 81, promptsPerRequest: 100})
    // logprobs (kl): nothing held across requests, rows of 32000 floats
    const kl = planSearch(1024, 100, 32000, 2 ** 25, false)
    expect(kl.groupSize * kl.promptsPerRequest * 32000).toBeLessThanOrEqual(2 ** 25)
    // one head's matrix larger than the budget: one head, prompts chunked
    expect(planSearch(10, 10_000, 4096, 2 ** 25, true)).toEqual({groupSize: 1, promptsPerRequest: 8192})
    // score kl: the clean row rides along in every request, and the budget still holds
    const withClean = planSearch(1024, 100, 32000, 2 ** 25, false, 1)
    expect((withClean.groupSize + 1) * withClean.promptsPerRequest * 32000).toBeLessThanOrEqual(2 ** 25)
    // cut to a quarter of the heads to pipeline, and the requests then hold 4x the prompts
    expect(withClean).toEqual({groupSize: 256, promptsPerRequest: 4})
    expect(planSearch(16, 100, 257, 2 ** 25, false, 1)).toEqual({groupSize: 16, promptsPerRequest: 100})
  })

  it('reads stored steps; drops a torn last line (truncating the file); refuses other settings and broken chains', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sahara-search-unit-'))
    const path = join(dir, 'search.jsonl')
    const a = JSON.stringify(line(1, {layer: 1, head: 2}, []))
    const b = JSON.stringify(line(2, {layer: 2, head: 0}, [{layer: 1, head: 2}]))
    writeFileSync(path, `${a}\n${b}\n`)
    expect(loadStoredSteps(path, settings).map((s) => s.chosen)).toEqual([{layer: 1, head: 2}, {layer: 2, head: 0}])

    const warnings: string[] = []
    writeFileSync(path, `${a}\n${b.slice(0, 30)}`)
    expect(loadStoredSteps(path, settings, {log: (m) => warnings.push(m)})).toHaveLength(1)
    expect(warnings[0]).toMatch(/ignoring an unterminated last line/)
    expect(readFileSync(path, 'utf8')).toBe(`${a}\n`)

    writeFileSync(path, `${a}\n${b}\n`)
    expect(() => loadStoredSteps(path, {...settings, centre: true})).toThrow('holds steps made with centre = false, but this run has centre = true')
    writeFileSync(path, `${b}\n`)
    expect(() => loadStoredSteps(path, settings)).toThrow(/line 1 is step 2, expected step 1/)
    writeFileSync(path, `${a}\n${JSON.stringify(line(2, {layer: 2, head: 0}, [{layer: 0, head: 0}]))}\n`)
    expect(() => loadStoredSteps(path, settings)).toThrow(/group_before does not match/)
    expect(loadStoredSteps(path, settings, {restart: true})).toEqual([])
    expect(readFileSync(path, 'utf8')).toBe('')
  })
})
