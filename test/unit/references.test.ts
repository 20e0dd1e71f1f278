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
  writeFileSync(join(dir, 'tiny', 'config.json'), JSON.stringify({num_hidden_layers: 2, num_attention_heads: 4}))
  writeFileSync(join(dir, 'other', 'config.json'), JSON.stringify({num_hidden_layers: 2, num_attention_heads: 4}))
  writeFileSync(join(dir, 'prompts.txt'), 'a\nb\n')
  file = join(dir, 'sweep.yaml')
})

const sweep = (asr: string, first = '  - kind: search\n    name: sahara\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n') =>
  `name: refs\njobs:\n${first}  - kind: asr\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n${asr}`

function errorOf(text: string): ConfigError {
  return configErrorOf(() => parseSweep(text, file))
}

describe('asr jobs taking heads from another job of the sweep', () => {
  it('expands top: [1, 2, 3] into three jobs bound to the search job by its entry name', () => {
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
    expect(error.message).toContain('no ships or search job or job entry named nope')
    expect(error.message).toContain('entries: sahara')
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

  it('entry names match exactly: sahara is not sahara-centred', () => {
    const two = '  - kind: search\n    name: sahara-centred\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n' +
      '  - kind: search\n    name: sahara\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n'
    const jobs = parseSweep(sweep('    heads_from_job: sahara\n    top: [1]\n', two), file).jobs
    expect((jobs[2].params as AsrParams).heads).toEqual({kind: 'job', job: 'sahara-tiny-prompts-ua-1e-5', top: 1})
    const centred = parseSweep(sweep('    heads_from_job: sahara-centred\n    top: [1]\n', two), file).jobs
    expect((centred[2].params as AsrParams).heads).toEqual({kind: 'job', job: 'sahara-centred-tiny-prompts-ua-1e-5', top: 1})
  })

  it('a top beyond the search steps or the model heads is an error at the reference', () => {
    const error = errorOf(sweep('    heads_from_job: sahara\n    top: [1, 4]\n', '  - kind: search\n    name: sahara\n    steps: 3\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n'))
    expect(error.path).toBe('jobs[1].heads_from_job')
    expect(error.message).toContain('top 4: search job sahara-tiny-prompts-ua-1e-5 finds only 3 heads')
    const ships = errorOf(sweep('    heads_from_job: scan\n    top: [9]\n', '  - kind: ships\n    name: scan\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n'))
    expect(ships.message).toContain('top 9: model ./tiny has only 8 heads')
  })
})

describe('heads named in an asr job are checked against a local model before any work', () => {
  const asr = (body: string) => `name: heads\njobs:\n  - kind: asr\n    matrix: {model: ./tiny, dataset: ./prompts.txt}\n${body}`

  it('a layer or head out of range names the file, line, field and head', () => {
    const layer = errorOf(asr('    heads: L0H1,L2H0\n'))
    expect(layer.file).toBe(file)
    expect(layer.line).toBe(5)
    expect(layer.path).toBe('jobs[0].heads')
    expect(layer.message).toContain('head L2H0 is out of range for model ./tiny: it has 2 layers (L0..L1) and 4 heads per layer (H0..H3)')
    expect(errorOf(asr('    heads: L1H4\n')).message).toContain('head L1H4 is out of range')
  })

  it('random:K larger than the model, and avoided heads out of range, are errors too', () => {
    expect(errorOf(asr('    heads: random:9\n    seed: 1\n')).path).toBe('jobs[0].heads')
    const avoid = errorOf(asr('    heads: random:2\n    seed: 1\n    avoid: L5H0\n'))
    expect(avoid.message).toContain('L5H0')
  })

  it('heads within range pass', () => {
    expect(parseSweep(asr('    heads: L1H3\n'), file).jobs).toHaveLength(1)
  })
})
