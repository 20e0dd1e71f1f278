import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {beforeAll, describe, expect, it} from 'vitest'

import type {ConfigError} from '../../src/config/fields.js'
import {parseSweep} from '../../src/config/sweep.js'
import type {ShipsParams} from '../../src/jobs/ships.js'
import {configErrorOf} from '../helpers.js'

let file: string

beforeAll(() => {
  const dir = mkdtempSync(join(tmpdir(), 'sahara-vars-'))
  writeFileSync(join(dir, 'prompts.txt'), 'a\nb\n')
  writeFileSync(join(dir, 'other.txt'), 'c\n')
  file = join(dir, 'sweep.yaml')
})

const sweep = (matrix: string, vars = '') => `name: v
${vars}jobs:
  - kind: ships
    matrix: ${matrix}
`

function datasetsOf(text: string, env: Record<string, string> = {}): string[] {
  return parseSweep(text, file, {env}).jobs.map((job) => (job.params as ShipsParams).dataset.name)
}

function errorOf(text: string, env: Record<string, string> = {}): ConfigError {
  return configErrorOf(() => parseSweep(text, file, {env}))
}

describe('sweep variables', () => {
  it('takes a value from vars:, and the environment overrides it', () => {
    const text = sweep("{model: organism, dataset: '${DATA}'}", 'vars:\n  DATA: ./prompts.txt\n')
    expect(datasetsOf(text)).toEqual(['prompts'])
    expect(datasetsOf(text, {DATA: './other.txt'})).toEqual(['other'])
  })

  it('uses the :- default when neither has a value, also inside lists', () => {
    expect(datasetsOf(sweep("{model: organism, dataset: ['${A:-./prompts.txt}', './other.txt']}"))).toEqual([
      'prompts',
      'other',
    ])
  })

  it('names the variable, file, line and field when it has no value', () => {
    const error = errorOf(sweep("{model: organism, dataset: ['./prompts.txt', '${MISSING}']}"))
    expect(error.message).toContain('${MISSING} has no value')
    expect(error.line).toBe(4)
    expect(error.path).toBe('jobs[0].matrix.dataset[1]')
  })

  it('rejects a malformed reference and bad vars:', () => {
    expect(errorOf(sweep("{model: organism, dataset: '${1X}'}")).message).toContain('malformed variable reference')
    expect(errorOf(sweep('{model: organism}', 'vars: [1, 2]\n')).message).toContain('vars: expected a mapping')
  })

  it('keeps $${ as a literal ${', () => {
    const error = errorOf(sweep("{model: organism, dataset: './$${X}.txt'}"))
    expect(error.message).toContain('${X}.txt')
  })
})
