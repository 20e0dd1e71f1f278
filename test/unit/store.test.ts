import {appendFileSync, mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {STORE_VERSION, StoreError, UnitStore} from '../../src/orchestration/store.js'

const fresh = () => join(mkdtempSync(join(tmpdir(), 'sahara-store-')), 'units.jsonl')
const unit = (i: number) => ({key: `k${i}`, job: 'job', unit: `u${i}`, result: {kl: [i, i / 3], text: `é${i}`}})

describe('the unit store', () => {
  it('reads back every unit written, in order, after a reopen', () => {
    const path = fresh()
    const store = UnitStore.open(path)
    for (let i = 0; i < 5; i++) store.put(unit(i))
    store.close()
    const again = UnitStore.open(path)
    expect(again.stats).toEqual({loaded: 5, skipped: 0, written: 0})
    expect(again.ofJob('job').map((u) => u.unit)).toEqual(['u0', 'u1', 'u2', 'u3', 'u4'])
    expect(again.get('k3')?.result).toEqual({kl: [3, 1], text: 'é3'})
  })

  it('skips a torn last record, cuts it off, and appends after the good ones', () => {
    const path = fresh()
    const store = UnitStore.open(path)
    store.put(unit(0))
    store.put(unit(1))
    store.close()
    const whole = readFileSync(path, 'utf8')
    appendFileSync(path, whole.split('\n')[2].slice(0, 30)) // a record cut mid-write, no newline
    const reopened = UnitStore.open(path)
    expect(reopened.stats).toEqual({loaded: 2, skipped: 1, written: 0})
    reopened.put(unit(2))
    reopened.close()
    const last = UnitStore.open(path)
    expect(last.stats).toEqual({loaded: 3, skipped: 0, written: 0})
    const after = readFileSync(path, 'utf8')
    expect(after.startsWith(whole)).toBe(true) // the good records are kept byte for byte
    expect(after.split('\n')).toHaveLength(5) // header, 3 records, the final newline
  })

  it('a record whose checksum does not match is skipped, not trusted', () => {
    const path = fresh()
    const store = UnitStore.open(path)
    store.put(unit(0))
    store.close()
    const text = readFileSync(path, 'utf8').replace('"kl":[0,0]', '"kl":[9,0]')
    writeFileSync(path, text)
    expect(UnitStore.open(path).stats).toEqual({loaded: 0, skipped: 1, written: 0})
  })

  it('refuses a store of another version or another format, and leaves it untouched', () => {
    const path = fresh()
    const other = `{"format":"sahara-units","version":${STORE_VERSION + 1}}\n{"key":"k"}\n`
    writeFileSync(path, other)
    expect(() => UnitStore.open(path)).toThrow(StoreError)
    expect(() => UnitStore.open(path)).toThrow(`unit store version ${STORE_VERSION + 1}, this Sahara reads version ${STORE_VERSION}`)
    expect(readFileSync(path, 'utf8')).toBe(other)
    writeFileSync(path, 'hello\nworld\n')
    expect(() => UnitStore.open(path)).toThrow('not a Sahara unit store')
  })
})
