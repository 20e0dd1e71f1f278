import {describe, expect, it} from 'vitest'

import {COUNT_TOKENS_BATCH, lengthOrder} from '../../src/jobs/prompt-order.js'
import {PromptTemplate, SidecarError, type SidecarClient} from '../../src/sidecar/client.js'

/** Only what lengthOrder calls: countTokens, answering with `count` or failing with `fail`. */
function client(count: (prompt: string) => number, fail?: SidecarError): {sidecar: SidecarClient; calls: number[]} {
  const calls: number[] = []
  const sidecar = {
    endpoint: '127.0.0.1:1',
    async countTokens({prompts}: {prompts: string[]}) {
      calls.push(prompts.length)
      if (fail) throw fail
      return prompts.map(count)
    },
  } as unknown as SidecarClient
  return {sidecar, calls}
}

describe('lengthOrder', () => {
  it('orders by token count, ties in dataset order, in batches of COUNT_TOKENS_BATCH', async () => {
    const prompts = Array.from({length: COUNT_TOKENS_BATCH + 3}, (_, i) => 'x'.repeat(1 + ((i * 7) % 5)))
    const {sidecar, calls} = client((p) => p.length)
    const order = await lengthOrder(sidecar, prompts, PromptTemplate.PROMPT_TEMPLATE_PAPER)
    expect(calls).toEqual([COUNT_TOKENS_BATCH, 3])
    expect([...order].sort((a, b) => a - b)).toEqual(prompts.map((_, i) => i))
    for (let k = 1; k < order.length; k++) {
      const [a, b] = [order[k - 1], order[k]]
      expect(prompts[a].length < prompts[b].length || (prompts[a].length === prompts[b].length && a < b)).toBe(true)
    }
  })

  it('keeps the dataset order with a sidecar that has no CountTokens, and passes other errors on', async () => {
    const old = client(() => 1, new SidecarError('CountTokens on 127.0.0.1:1: UNIMPLEMENTED: ', 'UNIMPLEMENTED'))
    expect(await lengthOrder(old.sidecar, ['bb', 'a'], PromptTemplate.PROMPT_TEMPLATE_PAPER)).toEqual([0, 1])
    const broken = client(() => 1, new SidecarError('CountTokens on 127.0.0.1:1: INVALID_ARGUMENT: prompts[1] is an empty string', 'INVALID_ARGUMENT'))
    await expect(lengthOrder(broken.sidecar, ['a', ''], PromptTemplate.PROMPT_TEMPLATE_PAPER)).rejects.toThrow(/prompts\[1\] is an empty string/)
  })

  it('refuses a reply with the wrong number of counts', async () => {
    const {sidecar} = client(() => 1)
    const short = {...sidecar, endpoint: sidecar.endpoint, countTokens: async () => [1]} as unknown as SidecarClient
    await expect(lengthOrder(short, ['a', 'b'], PromptTemplate.PROMPT_TEMPLATE_PAPER)).rejects.toThrow(/1 counts for 2 prompts/)
  })
})
