import {mkdirSync, mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {beforeAll, describe, expect, it} from 'vitest'

import type {ConfigError} from '../../src/config/fields.js'
import {loadSweep, parseSweep} from '../../src/config/sweep.js'
import type {SearchParams} from '../../src/jobs/search.js'
import type {ShipsParams} from '../../src/jobs/ships.js'
import {configErrorOf} from '../helpers.js'

let dir: string
let file: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sahara-config-'))
  mkdirSync(join(dir, 'tiny'))
  writeFileSync(join(dir, 'tiny', 'config.json'), '{}')
  mkdirSync(join(dir, 'four-heads'))
  writeFileSync(join(dir, 'four-heads', 'config.json'), JSON.stringify({num_hidden_layers: 2, num_attention_heads: 2}))
  writeFileSync(join(dir, 'prompts.txt'), 'a\nb\nc\n')
  writeFileSync(join(dir, 'empty.csv'), 'goal\nok\n""\n')
  writeFileSync(join(dir, 'nocolumn.csv'), 'text,label\nhow to x,1\n')
  file = join(dir, 'sweep.yaml')
})

/** Parse `text` as if it were <dir>/sweep.yaml; return the thrown ConfigError. */
function configError(text: string): ConfigError {
  return configErrorOf(() => parseSweep(text, file))
}

const good = `name: t
defaults:
  top_k: 3
  matrix:
    eps: [1e-5, 1e-4]
jobs:
  - kind: ships
    matrix:
      model: ./tiny
      dataset: [prompts.txt, jailbreakbench]
      method: [ua, sc]
    limit: 2
`

describe('valid sweeps', () => {
  it('expand the matrix into named, typed jobs, with defaults layered under each job', () => {
    const sweep = parseSweep(good, file)
    expect(sweep.name).toBe('t')
    expect(sweep.jobs.map((j) => j.name)).toEqual([
      'ships-tiny-prompts-ua-1e-5',
      'ships-tiny-prompts-ua-1e-4',
      'ships-tiny-prompts-sc-1e-5',
      'ships-tiny-prompts-sc-1e-4',
      'ships-tiny-jailbreakbench-ua-1e-5',
      'ships-tiny-jailbreakbench-ua-1e-4',
      'ships-tiny-jailbreakbench-sc-1e-5',
      'ships-tiny-jailbreakbench-sc-1e-4',
    ])
    const first = sweep.jobs[0]
    const params = first.params as ShipsParams
    expect(first.model).toEqual({name: './tiny', source: join(dir, 'tiny'), kind: 'local'})
    expect(params.dataset.prompts).toEqual(['a', 'b', 'c'])
    expect(params).toMatchObject({method: 'ua', eps: 1e-5, template: 'paper', topK: 3, limit: 2, smoothing: 1e-12})
  })

  it('a job overrides a default, and template appears in the name when not paper', () => {
    const sweep = parseSweep(
      `name: t\ndefaults: {top_k: 3}\njobs:\n  - kind: ships\n    name: x\n    top_k: 7\n    matrix: {model: ./tiny, dataset: prompts.txt, template: chat}\n`,
      file,
    )
    expect(sweep.jobs.map((j) => j.name)).toEqual(['x-tiny-prompts-ua-1e-5-chat'])
    expect((sweep.jobs[0].params as ShipsParams).topK).toBe(7)
  })

  it('logprob_support: absent is every token, K is sent as logprobSupport', () => {
    const job = (extra: string) => parseSweep(`name: t\njobs:\n  - kind: ships\n${extra}    matrix: {model: ./tiny, dataset: prompts.txt}\n`, file).jobs[0].params as ShipsParams
    expect(job('').logprobSupport).toBeUndefined()
    expect(job('    logprob_support: 256\n').logprobSupport).toBe(256)
  })

  it('search logprob_support: with score kl it is sent and named; absent is every token', () => {
    const jobs = (extra: string) => parseSweep(`name: t\njobs:\n  - kind: search\n    score: kl\n${extra}    matrix: {model: ./tiny, dataset: prompts.txt}\n`, file).jobs
    expect((jobs('')[0].params as SearchParams).logprobSupport).toBeUndefined()
    const [job] = jobs('    logprob_support: 64\n')
    expect((job.params as SearchParams).logprobSupport).toBe(64)
    expect(job.name).toBe('search-tiny-prompts-ua-1e-5-kl-support64')
  })

  it('the demo sweep in configs/ is well-formed', () => {
    // The organism may not be trained in every checkout; check everything but the model.
    const text = readFileSync('configs/demo-ships.yaml', 'utf8').replace('model: organism', 'model: ./tiny')
    const sweep = parseSweep(text, file)
    expect(sweep.name).toBe('demo-ships')
    expect(sweep.jobs.map((j) => j.name)).toEqual([
      'scan-tiny-jailbreakbench-ua-1e-5',
      'scan-tiny-jailbreakbench-sc-1e-5',
      'scan-tiny-harmful_val-ua-1e-5',
      'scan-tiny-harmful_val-sc-1e-5',
    ])
  })
})

describe('errors say file:line:col, the field and what is wrong', () => {
  const cases: [string, string, string][] = [
    ['unknown top-level key', 'name: t\njobz: []\n', ':2:1: jobz: unknown key "jobz" for a sweep (allowed: name, description, vars, endpoints, defaults, jobs, extends)'],
    [
      'unknown job key',
      'name: t\njobs:\n  - kind: ships\n    topk: 3\n    matrix: {model: ./tiny, dataset: prompts.txt}\n',
      ':4:5: jobs[0].topk: unknown key "topk" for a ships job (allowed: kind, name, matrix, top_k, limit, smoothing, logprob_support, prompts_per_unit, engine, memory_budget_gib, prefilter)',
    ],
    [
      'unknown key in defaults, reported where it was written',
      'name: t\ndefaults:\n  top-k: 3\njobs:\n  - kind: ships\n    matrix: {model: ./tiny, dataset: prompts.txt}\n',
      ':3:3: defaults.top-k: unknown key "top-k" for a ships job',
    ],
    [
      'unknown matrix axis',
      'name: t\njobs:\n  - kind: ships\n    matrix:\n      model: ./tiny\n      dataset: prompts.txt\n      heads: [L0H1]\n',
      ':7:7: jobs[0].matrix.heads: unknown key "heads" for a ships matrix (allowed: model, dataset, method, eps, template)',
    ],
    [
      'wrong type',
      'name: t\njobs:\n  - kind: ships\n    top_k: ten\n    matrix: {model: ./tiny, dataset: prompts.txt}\n',
      ':4:12: jobs[0].top_k: expected a number, got string "ten"',
    ],
    [
      'not an integer',
      'name: t\njobs:\n  - kind: ships\n    top_k: 2.5\n    matrix: {model: ./tiny, dataset: prompts.txt}\n',
      ':4:12: jobs[0].top_k: top_k must be an integer, got 2.5',
    ],
    [
      'a negative support size',
      'name: t\njobs:\n  - kind: ships\n    logprob_support: -4\n    matrix: {model: ./tiny, dataset: prompts.txt}\n',
      ':4:22: jobs[0].logprob_support: logprob_support must be >= 0, got -4',
    ],
    [
      'a support set for the angles score, which reads no log-probs',
      'name: t\njobs:\n  - kind: search\n    logprob_support: 16\n    matrix: {model: ./tiny, dataset: prompts.txt}\n',
      ':4:22: jobs[0].logprob_support: logprob_support applies to score kl only (score angles reads hidden states)',
    ],
    [
      'bad method, at its list position',
      'name: t\njobs:\n  - kind: ships\n    matrix:\n      model: ./tiny\n      dataset: prompts.txt\n      method: [ua, uax]\n',
      ':7:20: jobs[0].matrix.method[1]: "uax" is not one of ua, sc, mean',
    ],
    [
      'eps zero',
      'name: t\njobs:\n  - kind: ships\n    matrix: {model: ./tiny, dataset: prompts.txt, eps: 0}\n',
      ':4:56: jobs[0].matrix.eps: eps must be a positive finite number, got 0',
    ],
    [
      'eps infinite',
      'name: t\ndefaults:\n  matrix:\n    eps: [1e-5, .inf]\njobs:\n  - kind: ships\n    matrix: {model: ./tiny, dataset: prompts.txt}\n',
      ':4:17: defaults.matrix.eps[1]: eps must be a positive finite number, got Infinity',
    ],
    [
      'eps as a string',
      'name: t\njobs:\n  - kind: ships\n    matrix: {model: ./tiny, dataset: prompts.txt, eps: "1e-5"}\n',
      ':4:56: jobs[0].matrix.eps: expected a number, got string "1e-5"',
    ],
    [
      'missing dataset file',
      'name: t\njobs:\n  - kind: ships\n    matrix:\n      model: ./tiny\n      dataset: [prompts.txt, nope.json]\n',
      ':6:30: jobs[0].matrix.dataset[1]: dataset nope.json: no such file',
    ],
    [
      'a dataset with an empty prompt',
      'name: t\njobs:\n  - kind: ships\n    matrix: {model: ./tiny, dataset: empty.csv}\n',
      ':4:38: jobs[0].matrix.dataset: DIR/empty.csv:3: empty prompt in column goal',
    ],
    [
      'a dataset with no usable column',
      'name: t\njobs:\n  - kind: ships\n    matrix: {model: ./tiny, dataset: nocolumn.csv}\n',
      ':4:38: jobs[0].matrix.dataset: DIR/nocolumn.csv:1: no usable column: expected one of goal, Goal, input, instruction, prompt; the header has text, label',
    ],
    [
      'missing model directory',
      'name: t\njobs:\n  - kind: ships\n    matrix: {model: ./no-model, dataset: prompts.txt}\n',
      ':4:21: jobs[0].matrix.model: model "./no-model": no such directory',
    ],
    [
      'unknown kind',
      'name: t\njobs:\n  - kind: bogus\n',
      ':3:11: jobs[0].kind: "bogus" is not one of ships', // more kinds may follow
    ],
    ['missing kind', 'name: t\njobs:\n  - matrix: {}\n', ':3:5: jobs[0]: missing required key "kind"'],
    ['missing matrix key', 'name: t\njobs:\n  - kind: ships\n    matrix: {dataset: prompts.txt}\n', ':4:13: jobs[0].matrix: missing required key "model"'],
    ['missing jobs', 'name: t\n', ':1:1: missing required key "jobs"'],
    ['empty jobs', 'name: t\njobs: []\n', ':2:7: jobs: no jobs: give at least one'],
    ['bad sweep name', 'name: a b\njobs: []\n', ':1:7: name: "a b" is not valid'],
    ['a sweep name that leaves the runs folder', 'name: ".."\njobs: []\n', ':1:7: name: ".." is not valid'],
    ['more search steps than the model has heads', 'name: t\njobs:\n  - kind: search\n    steps: 5\n    matrix: {model: ./four-heads, dataset: prompts.txt}\n', ':4:12: jobs[0].steps: steps = 5 exceeds the 4 heads of model'],
    ['r_main above the rank the prompts allow', 'name: t\njobs:\n  - kind: search\n    r_main: 3\n    centre: mean\n    matrix: {model: ./tiny, dataset: prompts.txt}\n', ':4:13: jobs[0].r_main: r_main = 3 exceeds the rank of the representation matrix of prompts: at most 2 (3 prompts, centred)'],
    ['a YAML alias', 'name: &n t\njobs:\n  - kind: ships\n    matrix: {model: ./tiny, dataset: *n}\n', ':4:38: jobs[0].matrix.dataset: expected a string, got the alias *n (aliases are not supported'],
    ['an empty list axis', 'name: t\njobs:\n  - kind: ships\n    matrix: {model: [], dataset: prompts.txt}\n', ':4:21: jobs[0].matrix.model: empty list'],
    ['invalid YAML', 'name: t\njobs:\n  - kind: ships\n   bad: [\n', ':4:'],
    ['duplicate keys', 'name: t\nname: u\njobs: []\n', ':2:1: invalid YAML: Map keys must be unique'],
    [
      'duplicate job names',
      'name: t\njobs:\n  - kind: ships\n    matrix: {model: ./tiny, dataset: prompts.txt}\n  - kind: ships\n    matrix: {model: ./tiny, dataset: prompts.txt}\n',
      ':5:11: jobs[1].kind: job name ships-tiny-prompts-ua-1e-5 is produced twice (also by jobs[0])',
    ],
  ]

  it.each(cases)('%s', (_what, text, expected) => {
    const error = configError(text)
    expect(error.message).toContain(`${file}${expected.replace('DIR', dir)}`)
  })

  it('a missing sweep file is an error too', () => {
    expect(() => loadSweep(join(dir, 'nope.yaml'))).toThrow(`${join(dir, 'nope.yaml')}:1:1: cannot read the sweep file: no such file`)
  })
})
