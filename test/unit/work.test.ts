import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {EndpointPool} from '../../src/orchestration/pool.js'
import {UnitStore} from '../../src/orchestration/store.js'
import {type Unit, Work} from '../../src/orchestration/work.js'
import type {SidecarClient} from '../../src/sidecar/client.js'

// The units below compute locally and never touch the client; the pool only schedules them.
const pool = () => new EndpointPool([{id: 'local', client: {} as SidecarClient, healthy: async () => true}], {isHostFailure: () => false})

let runs = 0
const unit = (i: number): Unit<{i: number; values: number[]}> => ({
  id: `u${i}`,
  key: {i},
  async run() {
    runs++
    return {i, values: Array.from(new Float64Array([i / 3, Math.PI * i]))}
  },
})

describe('work units with a store', () => {
  it('stores every unit, reuses them on a re-run, and returns the same values either way', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'sahara-work-')), 'units.jsonl')
    const job = {name: 'ships-x', key: 'job-hash-1'}
    runs = 0
    const first = await new Work(pool(), job, UnitStore.open(path)).map([0, 1, 2, 3].map(unit))
    expect(runs).toBe(4)

    runs = 0
    const store = UnitStore.open(path)
    const again = new Work(pool(), job, store)
    const second = await again.map([0, 1, 2, 3, 4].map(unit))
    expect(runs).toBe(1) // only the new unit
    expect(again.counts).toEqual({reused: 4, computed: 1})
    expect(second.slice(0, 4)).toEqual(first)
    expect(store.ofJob('ships-x').map((u) => u.unit)).toEqual(['u0', 'u1', 'u2', 'u3', 'u4'])

    runs = 0
    const changed = new Work(pool(), {name: 'ships-x', key: 'job-hash-2'}, UnitStore.open(path))
    await changed.map([0, 1].map(unit))
    expect(changed.counts).toEqual({reused: 0, computed: 2}) // another job identity: nothing reused
  })
})
