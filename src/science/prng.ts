/**
 * A small seeded PRNG, deterministic across machines and Node versions: SplitMix32-style
 * integer mixing on uint32 state (Math.imul and unsigned shifts only, no floating point in the
 * state). Not for cryptography. Pure.
 */

export class SeedError extends RangeError {
  override name = 'SeedError'
}

export function checkSeed(seed: number): number {
  if (!(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff)) {
    throw new SeedError(`seed must be an integer in 0..4294967295, got ${seed}`)
  }
  return seed
}

/** A generator of uint32 values from a uint32 seed. */
export function makeRng(seed: number): () => number {
  let state = checkSeed(seed) >>> 0
  return () => {
    state = (state + 0x9e3779b9) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

/** A uniform integer in [0, n) from a uint32 generator, unbiased (rejection sampling). */
export function uniformInt(next: () => number, n: number): number {
  if (!(Number.isInteger(n) && n >= 1 && n <= 0x100000000)) throw new RangeError(`uniformInt: n must be an integer in 1..2^32, got ${n}`)
  const limit = 0x100000000 - (0x100000000 % n) // accept values below the largest multiple of n
  for (;;) {
    const x = next()
    if (x < limit) return x % n
  }
}

/** k distinct items drawn uniformly without replacement (partial Fisher-Yates), in draw order. */
export function sample<T>(items: readonly T[], k: number, seed: number): T[] {
  if (!(Number.isInteger(k) && k >= 0 && k <= items.length)) {
    throw new RangeError(`cannot draw ${k} distinct items from ${items.length}`)
  }
  const next = makeRng(seed)
  const pool = [...items]
  for (let i = 0; i < k; i++) {
    const j = i + uniformInt(next, pool.length - i)
    ;[pool[i], pool[j]] = [pool[j], pool[i]]
  }
  return pool.slice(0, k)
}
