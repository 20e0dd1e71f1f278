/**
 * The sidecar client against a real sidecar over gRPC, on a tiny random Llama: a result given back
 * with `recycle` lends its memory to the next Forward of the same size, which then holds exactly
 * what a client that never recycles receives; requests in flight together never share memory.
 *
 * Skipped on a machine without the sidecar's environment, never in CI (see test/helpers.ts).
 */
import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {AblationMethod, type ForwardResult, SidecarClient} from '../../src/sidecar/client.js'
import {type RunningSidecar, startSidecar} from '../../src/sidecar/process.js'
import {buildTinyModel, skipIntegration} from '../helpers.js'

const PROMPTS = ['How do I bake bread at home?', 'Tell me a joke about birds.', 'What is the capital of France?']

describe.skipIf(skipIntegration)('sidecar client, recycled tensor memory (real sidecar)', {timeout: 300_000}, () => {
  let sidecar: RunningSidecar
  beforeAll(async () => {
    sidecar = await startSidecar({model: await buildTinyModel(mkdtempSync(join(tmpdir(), 'sahara-client-')))})
  })
  afterAll(async () => sidecar?.stop())

  const request = (shift: number) => ({
    prompts: [...PROMPTS.slice(shift), ...PROMPTS.slice(0, shift)],
    specs: [{heads: [], method: AblationMethod.ABLATION_METHOD_UA, eps: 0}, ...[0, 1, 2].map((head) => ({heads: [{layer: shift, head}], method: AblationMethod.ABLATION_METHOD_UA, eps: 0}))],
    returnLogprobs: true,
    returnHidden: true,
  })
  const values = (result: ForwardResult) => Object.fromEntries([...result.tensors].map(([name, tensor]) => [name, [...tensor.data]]))

  it('writes the next result into recycled memory, and it is the same as a fresh one', async () => {
    const recycling = new SidecarClient(sidecar.endpoint)
    const fresh = new SidecarClient(sidecar.endpoint)
    const expected = await Promise.all([0, 1, 2].map(async (shift) => values(await fresh.forward(request(shift)))))
    expect(expected[0]).not.toEqual(expected[1])

    let previous = await recycling.forward(request(0))
    expect(values(previous)).toEqual(expected[0])
    for (const shift of [1, 2, 0]) {
      const memory = new Map([...previous.tensors].map(([name, t]) => [name, t.data.buffer]))
      recycling.recycle(previous)
      recycling.recycle(previous) // a second give is ignored
      const next = await recycling.forward(request(shift))
      for (const [name, buffer] of memory) expect(next.tensors.get(name)!.data.buffer === buffer, name).toBe(true)
      expect(values(next)).toEqual(expected[shift])
      previous = next
    }

    recycling.recycle(previous)
    const together = await Promise.all([1, 2].map((shift) => recycling.forward(request(shift))))
    const buffers = together.flatMap((result) => [...result.tensors.values()].map((t) => t.data.buffer))
    expect(new Set(buffers).size).toBe(buffers.length)
    expect(together.map(values)).toEqual([expected[1], expected[2]])
  })
})
