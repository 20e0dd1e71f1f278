import {mkdtempSync, readdirSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {describe, expect, it} from 'vitest'

import {loadSweep} from '../../src/config/sweep.js'
import {configErrorOf, repoRoot} from '../helpers.js'

const BASE = `name: base
vars: {MODEL: organism, DATASET: jailbreakbench}
jobs:
  - kind: ships
    matrix: {model: "\${MODEL}", dataset: "\${DATASET}"}
`

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'sahara-extends-'))
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  return dir
}

describe('a sweep that extends another', () => {
  it('runs the base jobs under its own name, with its vars over the base vars', () => {
    const dir = folder({'base.yaml': BASE, 'child.yaml': 'extends: base.yaml\nname: child\nvars: {DATASET: advbench}\n'})
    const sweep = loadSweep(join(dir, 'child.yaml'), {env: {}})
    expect(sweep.name).toBe('child')
    expect(sweep.file).toBe(join(dir, 'child.yaml'))
    expect(sweep.extends).toEqual([join(dir, 'base.yaml')])
    expect(sweep.jobs.map((j) => j.name)).toEqual(['ships-organism-advbench-ua-1e-5'])
    // the environment still wins over both
    expect(loadSweep(join(dir, 'child.yaml'), {env: {DATASET: 'harmful_val'}}).jobs[0].name).toBe('ships-organism-harmful_val-ua-1e-5')
  })

  it('errors in the jobs name the base file and line; a missing base names the extends line', () => {
    const dir = folder({'base.yaml': BASE.replace('kind: ships', 'kind: shipz'), 'child.yaml': 'name: child\nextends: base.yaml\n', 'lost.yaml': 'name: lost\nextends: nope.yaml\n'})
    const bad = configErrorOf(() => loadSweep(join(dir, 'child.yaml'), {env: {}}))
    expect(bad.file).toBe(join(dir, 'base.yaml'))
    expect(bad.line).toBe(4)
    const lost = configErrorOf(() => loadSweep(join(dir, 'lost.yaml'), {env: {}}))
    expect(lost.file).toBe(join(dir, 'lost.yaml'))
    expect(lost.line).toBe(2)
    expect(lost.message).toContain('nope.yaml: no such file')
  })

  it('an extending file has no jobs of its own, and a cycle is an error', () => {
    const dir = folder({'base.yaml': BASE, 'both.yaml': `extends: base.yaml\n${BASE}`, 'a.yaml': 'name: a\nextends: b.yaml\n', 'b.yaml': 'name: b\nextends: a.yaml\n'})
    expect(configErrorOf(() => loadSweep(join(dir, 'both.yaml'), {env: {}})).message).toContain('unknown key "jobs" for a sweep that extends another')
    expect(configErrorOf(() => loadSweep(join(dir, 'a.yaml'), {env: {}})).message).toContain('levels of extends (a cycle?)')
  })
})

describe('every sweep under configs/ is valid', () => {
  const dirs = [resolve(repoRoot, 'configs'), resolve(repoRoot, 'configs', 'paper')]
  const files = dirs.flatMap((d) => readdirSync(d).filter((f) => f.endsWith('.yaml')).map((f) => join(d, f)))

  it.each(files)('%s', (file) => {
    // served models are not checked locally (remoteModels), so the real-model configs validate here
    const sweep = loadSweep(file, {remoteModels: true, env: {}})
    expect(sweep.jobs.length).toBeGreaterThan(0)
  })
})

describe('the real-model configs use the paper settings', () => {
  const dir = resolve(repoRoot, 'configs', 'paper')
  const models = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'study.yaml')

  it('five models, each the same study: UA and SC, eps 1e-5, template prompt, 128 greedy tokens, the paper judge', () => {
    expect(models.sort()).toEqual(['llama-2-7b-chat.yaml', 'llama-3.1-8b-instruct.yaml', 'mistral-7b-instruct-v0.2.yaml', 'qwen2.5-7b-instruct.yaml', 'vicuna-7b-v1.5.yaml'])
    for (const file of models) {
      const sweep = loadSweep(join(dir, file), {remoteModels: true, env: {}})
      type P = {eps: number; template: string; method: string; maxNewTokens?: number; sampling?: {name: string}; judge?: string}
      const params = sweep.jobs.map((j) => j.params as P)
      expect(new Set(params.map((p) => p.eps))).toEqual(new Set([1e-5]))
      expect(new Set(params.map((p) => p.template))).toEqual(new Set(['paper']))
      expect(new Set(params.map((p) => p.method))).toEqual(new Set(['ua', 'sc']))
      const asr = sweep.jobs.filter((j) => j.kind === 'asr').map((j) => j.params as P)
      expect(asr.every((p) => p.maxNewTokens === 128 && p.sampling?.name === 'greedy' && p.judge === 'keyword-paper')).toBe(true)
      expect(sweep.jobs.filter((j) => j.kind === 'search')).toHaveLength(4)
    }
  })
})
