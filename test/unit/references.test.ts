import {mkdirSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {beforeAll, describe, expect, it} from 'vitest'

import type {ConfigError} from '../../src/config/fields.js'
import {parseSweep} from '../../src/config/sweep.js'
import type {AsrParams} from '../../src/jobs/asr.js'
import {configErrorOf} from '../helpers.js'

let file: string

beforeAll(() => {
  const dir = mkdtempSync(join(tmpdir(), 'sahara-refs-'))
  mkdirSync(join(dir, 'tiny'))
  mkdirSync(join(dir, 'other'))
  writeFileSync(join(dir, 'tiny', 'config.json'), '{}')
  writeFileSync(join(dir, 'other', 'config.json'), '{}')
  writeFileSync(join(dir, 'prompts.txt'), 'a\nb\n')
  file = join(dir, 'sweep.yaml')
})

const sweep = (asr: string, first = '  - kind: search\n    name: sahara\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n') =>
  `name: refs\njobs:\n${first}  - kind: asr\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n${asr}`

function errorOf(text: string): ConfigError {
  return configErrorOf(() => parseSweep(text, file))
}

describe('asr jobs taking heads from another job of the sweep', () => {
  it('expands top: [1, 2, 3] into three jobs bound to the search job by its name prefix', () => {
    const jobs = parseSweep(sweep('    heads_from_job: sahara\n    top: [1, 2, 3]\n'), file).jobs
    expect(jobs.map((j) => j.name)).toEqual([
      'sahara-tiny-prompts-ua-1e-5',
      'asr-tiny-prompts-ua-1e-5-top1',
      'asr-tiny-prompts-ua-1e-5-top2',
      'asr-tiny-prompts-ua-1e-5-top3',
    ])
    expect(jobs.slice(1).map((j) => (j.params as AsrParams).heads)).toEqual([1, 2, 3].map((top) => ({kind: 'job', job: 'sahara-tiny-prompts-ua-1e-5', top})))
  })

  it('a missing job is an error at its line, before any work', () => {
    const error = errorOf(sweep('    heads_from_job: nope\n    top: [1]\n'))
    expect(error.line).toBe(8)
    expect(error.path).toBe('jobs[1].heads_from_job')
    expect(error.message).toContain('no ships or search job named nope')
    expect(error.message).toContain('jobs: sahara-tiny-prompts-ua-1e-5')
  })

  it('the referenced job must come first, be ships or search, and run the same model', () => {
    const later = `name: refs\njobs:\n  - kind: asr\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n    heads_from_job: sahara\n    top: [1]\n  - kind: search\n    name: sahara\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n`
    expect(errorOf(later).message).toContain('comes after this job')
    const otherModel = sweep('    heads_from_job: sahara-other-prompts-ua-1e-5\n    top: [1]\n', '  - kind: search\n    name: sahara\n    matrix: {model: ./other, dataset: ./prompts.txt}\n')
    expect(errorOf(otherModel).message).toContain('heads carry over only within one model')
    const asrFirst = sweep('    heads_from_job: first\n    top: [1]\n', '  - kind: asr\n    name: first\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n    heads: L0H0\n')
    expect(errorOf(asrFirst).message).toContain('is of kind asr; expected ships or search')
  })

  it('heads_from_job excludes heads and heads_from', () => {
    expect(errorOf(sweep('    heads_from_job: sahara\n    heads: L0H0\n    top: [1]\n')).message).toContain('give one of heads, heads_from, heads_from_job')
  })
})
