import {describe, expect, it} from 'vitest'

import {type Endpoint, EndpointPool, NoEndpointsError} from '../../src/orchestration/pool.js'

class HostDown extends Error {}

/** An endpoint whose "client" is its own name; `alive` is flipped by the test. */
function endpoint(id: string, alive: {value: boolean}): Endpoint<{id: string; alive: {value: boolean}}> {
  return {id, client: {id, alive}, healthy: async () => alive.value}
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const options = {isHostFailure: (e: unknown) => e instanceof HostDown, recheckMs: 20, giveUpAfterMs: 200}

/** Squares i on whatever host runs it, failing when the host is down. */
const square = (i: number) => async (client: {id: string; alive: {value: boolean}}) => {
  await sleep(2)
  if (!client.alive.value) throw new HostDown(`${client.id} is down`)
  return i * i
}

describe('the endpoint pool', () => {
  it('spreads units over every endpoint and returns results in task order', async () => {
    const hosts = ['a', 'b', 'c'].map((id) => endpoint(id, {value: true}))
    const pool = new EndpointPool(hosts, options)
    const seen: number[] = []
    const out = await pool.run(Array.from({length: 30}, (_, i) => square(i)), (i) => seen.push(i))
    expect(out).toEqual(Array.from({length: 30}, (_, i) => i * i))
    expect(seen.sort((x, y) => x - y)).toEqual(Array.from({length: 30}, (_, i) => i))
    expect(Object.values(pool.finishedBy).every((n) => n > 0)).toBe(true)
  })

  it('re-queues the units of a host that dies, drops it, and uses it again once it serves', async () => {
    const bAlive = {value: true}
    const warnings: string[] = []
    const pool = new EndpointPool([endpoint('a', {value: true}), endpoint('b', bAlive)], {...options, warn: (m) => warnings.push(m)})
    const tasks = Array.from({length: 40}, (_, i) => async (client: {id: string; alive: {value: boolean}}, id: string) => {
      if (i === 5) bAlive.value = false // b dies early ...
      if (i === 25) bAlive.value = true // ... and comes back
      return square(i)(client).then((v) => ({v, id}))
    })
    const out = await pool.run(tasks)
    expect(out.map((r) => r.v)).toEqual(Array.from({length: 40}, (_, i) => i * i))
    expect(warnings.some((w) => w.startsWith('endpoint b dropped'))).toBe(true)
    pool.close()
  })

  it('servingClient checks again: a host that stopped since the last check is passed over', async () => {
    const aAlive = {value: true}
    const warnings: string[] = []
    const pool = new EndpointPool([endpoint('a', aAlive), endpoint('b', {value: true})], {...options, warn: (m) => warnings.push(m)})
    await pool.checkAll()
    expect((await pool.servingClient()).id).toBe('a')
    aAlive.value = false // a dies between two jobs: nothing ran on it to notice
    expect(pool.anyClient.id).toBe('a')
    expect((await pool.servingClient()).id).toBe('b')
    expect(warnings.some((w) => w.startsWith('endpoint a dropped'))).toBe(true)
    pool.close()
  })

  it('stops with a clear error when no endpoint is left, after the units in flight finish', async () => {
    const alive = {value: true}
    const pool = new EndpointPool([endpoint('a', alive)], options)
    const stored: number[] = []
    const tasks = Array.from({length: 10}, (_, i) => async (client: {id: string; alive: {value: boolean}}) => {
      if (i === 3) alive.value = false
      return square(i)(client)
    })
    await expect(pool.run(tasks, (i) => stored.push(i))).rejects.toThrow(NoEndpointsError)
    await expect(new EndpointPool([endpoint('a', {value: false})], options).checkAll()).rejects.toThrow('no sidecar left to run on (a: not serving)')
    expect(stored.length).toBeGreaterThan(0) // what finished before was handed over
    pool.close()
  })

  it('fails the run at once on an error that is not the host\'s', async () => {
    const pool = new EndpointPool([endpoint('a', {value: true}), endpoint('b', {value: true})], options)
    const tasks = [square(1), async () => {
      throw new Error('INVALID_ARGUMENT: specs[0].heads[0]: layer 9 out of range')
    }, square(3)]
    await expect(pool.run(tasks)).rejects.toThrow('layer 9 out of range')
  })

  it('gives up on a unit that brings down every host it touches', async () => {
    const pool = new EndpointPool([endpoint('a', {value: true}), endpoint('b', {value: true})], {...options, maxAttempts: 3})
    const poison = async (client: {id: string}) => {
      throw new HostDown(`${client.id} crashed`)
    }
    await expect(pool.run([poison])).rejects.toThrow('a unit failed 3 times in a row with a host failure')
    pool.close()
  })
})
