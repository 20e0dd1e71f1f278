/**
 * The built CLI rejects bad arguments and bad sweeps before any work starts (no sidecar is
 * started: these run without one), with exit code 2 and a message that says where.
 */
import {mkdirSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {cli} from '../helpers.js'

const dir = mkdtempSync(join(tmpdir(), 'sahara-cli-'))
// A directory that passes as a model (config.json), so the checks get past the model to what they test.
const model = join(dir, 'model')
mkdirSync(model)
writeFileSync(join(model, 'config.json'), '{}')

describe('sahara run with a bad sweep', () => {
  it('exits non-zero with file:line:col and the field', async () => {
    const sweep = join(dir, 'bad.yaml')
    writeFileSync(sweep, `name: bad\njobs:\n  - kind: ships\n    matrix:\n      model: ${model}\n`+'      dataset: jailbreakbench\n      method: [ua, bogus]\n')
    const result = await cli(['run', sweep])
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toContain(`${sweep}:7:20: jobs[0].matrix.method[1]: "bogus" is not one of ua, sc, mean`)
  })

  it('reports an unknown key with its line, and --json gives the error as JSON', async () => {
    const sweep = join(dir, 'unknown.yaml')
    writeFileSync(sweep, 'name: bad\njobs:\n  - kind: ships\n    topk: 3\n')
    const result = await cli(['run', sweep, '--json'])
    expect(result.exitCode, result.stderr).toBe(2)
    const error = JSON.parse(result.stdout) as {error: {message: string}}
    expect(error.error.message).toContain(`${sweep}:4:5: jobs[0].topk: unknown key "topk"`)
  })

  it('a missing sweep file', async () => {
    const result = await cli(['run', join(dir, 'nope.yaml')])
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toContain('nope.yaml:1:1: cannot read the sweep file: no such file')
  })
})

describe('sahara ships with bad arguments', () => {
  it('rejects a non-positive eps', async () => {
    const result = await cli(['ships', '--dataset', 'jailbreakbench', '--eps', '-1'])
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toContain('--eps must be a positive finite number, got "-1"')
  })

  it('rejects a missing dataset, naming it', async () => {
    const result = await cli(['ships', '--model', model, '--dataset', join(dir, 'missing.csv')])
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toMatch(/dataset .*missing\.csv: no such file/)
  })

  it('rejects a dataset with a bad line', async () => {
    const csv = join(dir, 'bad.csv')
    writeFileSync(csv, 'goal\nfine\n""\n')
    const result = await cli(['ships', '--model', model, '--dataset', csv])
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toContain(`${csv}:3: empty prompt in column goal`)
  })

  it('rejects a model that is neither a directory nor a hub id', async () => {
    const result = await cli(['ships', '--model', './no/such/model', '--dataset', 'jailbreakbench'])
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toContain('no such directory')
  })

  it('rejects an output folder that is a file, before starting a sidecar', async () => {
    const file = join(dir, 'a-file')
    writeFileSync(file, 'not a folder')
    const result = await cli(['ships', '--model', model, '--dataset', 'jailbreakbench', '--out', file])
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toContain(`--out ${file}: ${file} exists and is not a folder`)
  })

  it('rejects several endpoints (one sidecar per command; `run` spreads over several)', async () => {
    const result = await cli(['ships', '--model', model, '--dataset', 'jailbreakbench', '--endpoint', '127.0.0.1:1,127.0.0.1:2'])
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toContain('this command talks to one sidecar; `sahara run` spreads a sweep over several')
  })

  it('rejects an unknown method (oclif validates options)', async () => {
    const result = await cli(['ships', '--dataset', 'jailbreakbench', '--method', 'xx'])
    expect(result.exitCode).not.toBe(0)
    expect(result.stderr).toMatch(/Expected --method=xx to be one of: ua, sc, mean/)
  })
})

describe('help', () => {
  it('lists every command', async () => {
    const result = await cli(['--help'])
    expect(result.exitCode).toBe(0)
    for (const command of ['describe', 'ships', 'run', 'sidecar']) expect(result.stdout).toContain(command)
    const sidecar = await cli(['sidecar', '--help'])
    for (const command of ['start', 'stop', 'status']) expect(sidecar.stdout).toContain(`sidecar ${command}`)
  })
})
