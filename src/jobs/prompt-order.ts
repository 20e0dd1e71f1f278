/**
 * The order in which a job hands its prompts to Forward requests. The fast engine pads every
 * prompt of a batch to the batch's longest, and a batch only holds prompts of one request: a
 * request of prompts of similar length leaves little padding. Organism, 100 JailbreakBench prompts
 * in requests of 32: 10.9% of the tokens computed are padding in the dataset's order, 3.9% in
 * order of token count (the scan takes ~6% less time).
 */
import {SidecarError, type PromptTemplate, type SidecarClient} from '../sidecar/client.js'

/** Prompts per CountTokens call, well inside a sidecar's default --max-prompts (4096). */
export const COUNT_TOKENS_BATCH = 1024

/**
 * Indices of `prompts` by token count (shortest first, ties in dataset order). A sidecar without
 * CountTokens (older than this CLI) leaves the dataset's order.
 */
export async function lengthOrder(client: SidecarClient, prompts: readonly string[], template: PromptTemplate): Promise<number[]> {
  const identity = prompts.map((_, i) => i)
  const tokens: number[] = []
  try {
    for (let start = 0; start < prompts.length; start += COUNT_TOKENS_BATCH) {
      const part = prompts.slice(start, start + COUNT_TOKENS_BATCH)
      const counts = await client.countTokens({prompts: part, template})
      if (counts.length !== part.length) {
        throw new SidecarError(`CountTokens on ${client.endpoint}: ${counts.length} counts for ${part.length} prompts`, 'PROTOCOL')
      }

      tokens.push(...counts)
    }
  } catch (error) {
    if (error instanceof SidecarError && error.code === 'UNIMPLEMENTED') return identity
    throw error
  }

  return identity.sort((a, b) => tokens[a] - tokens[b] || a - b)
}
