/**
 * Aggregating query-level Ships (METHOD.md): per-query top-k heads and the dataset ranking.
 *
 * Input: for each query, a Float64Array of KL values over all L×H heads in scan order
 * (index = layer * H + head). The authors' code keeps the top 10 heads per query and
 * aggregates by how often a head is in a query's top-k and by summed KL; the ranking here is
 * by mean KL (= summed KL / N, the same order), with the top-k count alongside.
 * Pure functions, no I/O.
 */
import type {Geometry} from './heads.js'

export interface HeadKl {
  layer: number
  head: number
  kl: number
}

export interface RankedHead {
  layer: number
  head: number
  mean_kl: number
  /** How many queries have this head in their top-k. */
  topk_count: number
}

/** A KL as a sort key: NaN (non-finite log-probs) ranks with -Infinity, last, so the order stays a
 * total order (a comparator that skips NaN is not transitive and can misplace finite values too). */
const rankKey = (x: number) => (Number.isNaN(x) ? Number.NEGATIVE_INFINITY : x)

/** -1, 0 or 1: a before b when a's key is larger (descending; NaN last). */
export const descending = (a: number, b: number) => {
  const ka = rankKey(a)
  const kb = rankKey(b)
  return ka > kb ? -1 : ka < kb ? 1 : 0
}

/** Descending by value; ties keep scan order (lower index first), so results are deterministic. */
function orderDescending(values: ArrayLike<number>): number[] {
  const order = Array.from({length: values.length}, (_, i) => i)
  order.sort((a, b) => descending(values[a], values[b]) || a - b)
  return order
}

function checkLength(kl: ArrayLike<number>, geometry: Geometry): void {
  const expected = geometry.numLayers * geometry.numHeads
  if (kl.length !== expected) {
    throw new RangeError(
      `expected ${expected} KL values (L=${geometry.numLayers} x H=${geometry.numHeads}), got ${kl.length}`,
    )
  }
}

/** The k heads with the largest KL for one query, largest first. */
export function topKHeads(kl: ArrayLike<number>, geometry: Geometry, k: number): HeadKl[] {
  checkLength(kl, geometry)
  if (!(Number.isInteger(k) && k >= 1)) throw new RangeError(`top-k must be an integer >= 1, got ${k}`)
  return orderDescending(kl)
    .slice(0, k)
    .map((i) => ({layer: Math.floor(i / geometry.numHeads), head: i % geometry.numHeads, kl: kl[i]}))
}

/**
 * Rank all L×H heads over a dataset by mean KL (largest first), with topk_count = the number of
 * queries whose top-k contains the head. Ties in mean KL are broken by topk_count, then scan order.
 */
export function rankHeads(perQuery: ArrayLike<number>[], geometry: Geometry, k: number): RankedHead[] {
  if (perQuery.length === 0) throw new RangeError('no queries to rank heads over')
  const n = geometry.numLayers * geometry.numHeads
  const sum = new Float64Array(n)
  const count = new Uint32Array(n)
  for (const kl of perQuery) {
    checkLength(kl, geometry)
    for (let i = 0; i < n; i++) sum[i] += kl[i]
    for (const h of topKHeads(kl, geometry, k)) count[h.layer * geometry.numHeads + h.head]++
  }

  const ranked = Array.from({length: n}, (_, i) => ({
    index: i,
    layer: Math.floor(i / geometry.numHeads),
    head: i % geometry.numHeads,
    mean_kl: sum[i] / perQuery.length,
    topk_count: count[i],
  }))
  ranked.sort((a, b) => descending(a.mean_kl, b.mean_kl) || b.topk_count - a.topk_count || a.index - b.index)
  return ranked.map(({layer, head, mean_kl, topk_count}) => ({layer, head, mean_kl, topk_count}))
}
