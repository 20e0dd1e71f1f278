import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {DatasetError, loadDataset, loadPrompts, parseCsv, resolveDataset} from '../../src/data/datasets.js'

let dir: string
const file = (name: string, text: string) => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sahara-datasets-'))
})
afterAll(() => {})

describe('.json', () => {
  it('reads a list of strings', () => {
    expect(loadPrompts(file('a.json', '["one", "two"]'))).toEqual(['one', 'two'])
  })

  it('reads objects by the first present prompt field', () => {
    const path = file('b.json', JSON.stringify([{instruction: 'i1', category: 'c'}, {goal: 'g2', instruction: 'ignored'}, {prompt: 'p3'}]))
    expect(loadPrompts(path)).toEqual(['i1', 'g2', 'p3'])
  })

  it('names the element that is wrong', () => {
    const noField = file('c.json', JSON.stringify([{instruction: 'ok'}, {text: 'x', category: 'y'}]))
    expect(() => loadPrompts(noField)).toThrow(`${noField}: element [1]: object has no prompt field (expected one of goal, Goal, input, instruction, prompt; it has text, category)`)
    const empty = file('d.json', JSON.stringify(['ok', '  ']))
    expect(() => loadPrompts(empty)).toThrow(`${empty}: element [1]: empty prompt`)
    const num = file('e.json', '[1]')
    expect(() => loadPrompts(num)).toThrow(`${num}: element [0]: expected a string prompt or an object with a prompt field, got number 1`)
    const notList = file('f.json', '{"a": 1}')
    expect(() => loadPrompts(notList)).toThrow(`${notList}: expected a JSON list of prompts, got an object`)
    const bad = file('g.json', '[1,')
    expect(() => loadPrompts(bad)).toThrow(new RegExp(`${bad}: invalid JSON`))
    const none = file('h.json', '[]')
    expect(() => loadPrompts(none)).toThrow(`${none}: no prompts`)
  })
})

describe('.jsonl', () => {
  it('reads one item per line, skipping blank lines', () => {
    expect(loadPrompts(file('a.jsonl', '"one"\n\n{"goal": "two"}\r\n{"input": "three"}\n'))).toEqual(['one', 'two', 'three'])
  })

  it('names the line that is wrong', () => {
    const bad = file('b.jsonl', '"ok"\n{"goal": \n')
    expect(() => loadPrompts(bad)).toThrow(new RegExp(`${bad}:2: invalid JSON`))
    const empty = file('c.jsonl', '"ok"\n"ok"\n{"prompt": ""}\n')
    expect(() => loadPrompts(empty)).toThrow(`${empty}:3, field prompt: empty prompt`)
  })
})

describe('.csv', () => {
  it('picks the first present column of goal, Goal, input, instruction, prompt', () => {
    expect(loadPrompts(file('a.csv', 'id,instruction,goal\n1,i,g1\n2,i,g2\n'))).toEqual(['g1', 'g2'])
    expect(loadPrompts(file('b.csv', 'Goal,Target\nG1,T\n'))).toEqual(['G1'])
    expect(loadPrompts(file('c.csv', 'prompt\nonly\n'))).toEqual(['only'])
  })

  it('parses quoted fields: commas, doubled quotes, newlines, CRLF', () => {
    const path = file('d.csv', 'goal,target\r\n"Say ""hi"", then go",x\r\n"two\nlines",y\r\nplain,z')
    expect(loadPrompts(path)).toEqual(['Say "hi", then go', 'two\nlines', 'plain'])
  })

  it('tracks record start lines across quoted newlines', () => {
    const records = parseCsv('a,b\n"x\ny",1\nz,2\n', 't.csv')
    expect(records.map((r) => r.line)).toEqual([1, 2, 4])
  })

  it('errors name file, line and what is wrong', () => {
    const noColumn = file('e.csv', 'text,label\na,b\n')
    expect(() => loadPrompts(noColumn)).toThrow(`${noColumn}:1: no usable column: expected one of goal, Goal, input, instruction, prompt; the header has text, label`)
    const empty = file('f.csv', 'goal,x\nok,1\n ,2\n')
    expect(() => loadPrompts(empty)).toThrow(`${empty}:3: empty prompt in column goal`)
    const unterminated = file('g.csv', 'goal\nok\n"open\nstill open\n')
    expect(() => loadPrompts(unterminated)).toThrow(`${unterminated}:3: unterminated quoted field`)
    const ragged = file('h.csv', 'goal,x\na,1,extra\n')
    expect(() => loadPrompts(ragged)).toThrow(`${ragged}:2: 3 fields, but the header has 2`)
    const stray = file('i.csv', 'goal\nsay "hi"\n')
    expect(() => loadPrompts(stray)).toThrow(`${stray}:2: a quote inside an unquoted field`)
    const headerOnly = file('j.csv', 'goal\n')
    expect(() => loadPrompts(headerOnly)).toThrow(`${headerOnly}: no prompts`)
  })
})

describe('.txt and files in general', () => {
  it('reads one prompt per line, skipping blank lines', () => {
    expect(loadPrompts(file('a.txt', 'one\n\ntwo\r\n  \nthree'))).toEqual(['one', 'two', 'three'])
  })

  it('strips a UTF-8 BOM', () => {
    expect(loadPrompts(file('bom.json', '\uFEFF["x"]'))).toEqual(['x'])
  })

  it('rejects unknown formats and missing files', () => {
    const yml = file('a.yaml', '- x')
    expect(() => loadPrompts(yml)).toThrow(`${yml}: unsupported format .yaml; expected one of .json, .jsonl, .csv, .txt`)
    expect(() => loadDataset(join(dir, 'missing.json'))).toThrow(/no such file/)
    expect(() => loadDataset(dir)).toThrow(/is a directory/)
  })
})

describe('built-in names', () => {
  it('resolve to the shared data folder beside the repository', () => {
    const {name, path} = resolveDataset('jailbreakbench')
    expect(name).toBe('jailbreakbench')
    expect(path).toMatch(/shared\/data\/jailbreakbench\.json$/)
    expect(loadDataset('jailbreakbench').prompts).toHaveLength(100)
  })

  it('list what exists when a name is unknown', () => {
    expect(() => resolveDataset('nosuchset')).toThrow(DatasetError)
    expect(() => resolveDataset('nosuchset')).toThrow(/not a built-in name \(built-in: .*jailbreakbench/)
  })
})
