import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {appendLineDurable, resultJson, writeFileAtomic} from '../../src/orchestration/files.js'

const freshDir = () => mkdtempSync(join(tmpdir(), 'sahara-files-'))

describe('resultJson', () => {
  it('writes a number that is not finite as its string (JSON has none; JSON.stringify makes it null)', () => {
    expect(resultJson({kl: [1.5, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN], name: 'x'})).toBe('{"kl":[1.5,"Infinity","-Infinity","NaN"],"name":"x"}')
    expect(resultJson({a: 1}, 2)).toBe('{\n  "a": 1\n}')
  })
})

describe('writeFileAtomic', () => {
  it('creates and replaces a file, leaving no temporary behind', () => {
    const dir = freshDir()
    const path = join(dir, 'summary.json')
    writeFileAtomic(path, '{"a":1}\n')
    expect(readFileSync(path, 'utf8')).toBe('{"a":1}\n')
    writeFileAtomic(path, new TextEncoder().encode('é\n'))
    expect(readFileSync(path, 'utf8')).toBe('é\n')
    expect(readdirSync(dir)).toEqual(['summary.json'])
  })

  it('leaves the old file whole when the new one cannot be written', () => {
    const dir = freshDir()
    const path = join(dir, 'ships.jsonl')
    writeFileSync(path, 'old\n')
    mkdirSync(`${path}.tmp`) // the temporary's name is taken by a folder: opening it fails
    expect(() => writeFileAtomic(path, 'new\n')).toThrow(/EISDIR/)
    expect(readFileSync(path, 'utf8')).toBe('old\n')
    expect(statSync(`${path}.tmp`).isDirectory()).toBe(true) // not ours: left alone
  })

  it('removes its temporary when the rename fails', () => {
    const dir = freshDir()
    const path = join(dir, 'taken')
    mkdirSync(join(path, 'inside'), {recursive: true}) // a non-empty folder cannot be replaced by a file
    expect(() => writeFileAtomic(path, 'text')).toThrow()
    expect(existsSync(`${path}.tmp`)).toBe(false)
    expect(readdirSync(path)).toEqual(['inside'])
  })
})

describe('appendLineDurable', () => {
  it('appends whole lines to a new or existing file', () => {
    const path = join(freshDir(), 'steps.jsonl')
    appendLineDurable(path, '{"step":1}')
    appendLineDurable(path, '{"step":2}')
    expect(readFileSync(path, 'utf8')).toBe('{"step":1}\n{"step":2}\n')
  })
})
