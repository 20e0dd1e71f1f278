import {mkdtempSync, mkdirSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {parseSweep} from '../../src/config/sweep.js'
import {ModelError, modelLabel, resolveModel} from '../../src/models.js'
import {modelsDir} from '../../src/paths.js'

const dir = mkdtempSync(join(tmpdir(), 'sahara-models-'))
mkdirSync(join(dir, 'm'))
writeFileSync(join(dir, 'm', 'config.json'), '{}')
mkdirSync(join(dir, 'empty'))

describe('resolveModel', () => {
  it('maps the embedded names to <repo>/models/', () => {
    // The organism is committed; its config.json is what makes it a model directory.
    expect(resolveModel('organism')).toEqual({name: 'organism', source: join(modelsDir, 'organism'), kind: 'embedded'})
  })

  it('takes a local directory with a config.json', () => {
    expect(resolveModel('m', dir)).toEqual({name: 'm', source: join(dir, 'm'), kind: 'local'})
    expect(() => resolveModel('empty', dir)).toThrow(/has no config.json \(not a Hugging Face model directory\)/)
    expect(() => resolveModel('m/config.json', dir)).toThrow(/is a file, expected a model directory/)
  })

  it('passes owner/name on as a hub id, and rejects what is neither', () => {
    expect(resolveModel('meta-llama/Llama-2-7b-chat-hf', dir)).toEqual({name: 'meta-llama/Llama-2-7b-chat-hf', source: 'meta-llama/Llama-2-7b-chat-hf', kind: 'hub'})
    expect(() => resolveModel('./nope', dir)).toThrow(ModelError)
    expect(() => resolveModel('organsim', dir)).toThrow(/no such directory .*not a hub id \(owner\/name\); embedded models: organism, organism-natural/)
    expect(() => resolveModel(' ', dir)).toThrow('empty model name')
  })

  it('checks nothing locally for a model served at --endpoint', () => {
    expect(resolveModel('/models/Llama-2-7b-chat-hf', dir, {remote: true})).toEqual({name: '/models/Llama-2-7b-chat-hf', source: '/models/Llama-2-7b-chat-hf', kind: 'remote'})
    const sweep = parseSweep('name: r\njobs:\n  - kind: ships\n    matrix: {model: /models/x, dataset: jailbreakbench}\n', join(dir, 's.yaml'), {remoteModels: true})
    expect(sweep.jobs[0].model.kind).toBe('remote')
  })

  it('labels models for job names and folders', () => {
    expect(modelLabel('organism')).toBe('organism')
    expect(modelLabel('meta-llama/Llama-2-7b-chat-hf')).toBe('Llama-2-7b-chat-hf')
    expect(modelLabel('./runs/my model/')).toBe('my_model')
  })
})
