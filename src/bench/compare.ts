/**
 * Do two engines give the same science? For Ships: the largest relative difference of any
 * (query, head) KL and of any head's mean KL, and whether the top-10 rankings are identical;
 * for a Sahara step: every head's score, and whether the same head is chosen, or two heads
 * whose scores are equal within the tolerance (a tie the float noise decides). Pure functions.
 *
 * Float32 log-probs from differently shaped forwards (batched and padded, or one unpadded
 * prompt) differ by ~1e-7 relative: one or two ulps of |log p| ≈ 10, where an ulp is 9.5e-7.
 * Each row's log-sum-exp is rounded once per engine and shifts every log-prob of the row
 * together, so a KL carries an absolute noise of up to ~2e-6 (measured: 1.2e-6 and 1.7e-6 on a
 * random Llama with a 32000-token vocabulary). KLs of heads that barely matter come out as
 * ±1e-7, even negative with smoothing. So KLs are compared relatively where they are at least
 * KL_FLOOR = 1e-2 (there 2e-6 is <= 2e-4 relative) and absolutely below; an entry agrees when
 * |a - b| <= 1e-4·max(|a|, |b|) + 2e-6.
 */

export interface Agreement {
  /** max over (query, head) of |a - b| / max(|a|, |b|), over entries with max(|a|, |b|) >= KL_FLOOR. */
  kl_rel_diff_max: number
  /** The same over heads' mean KL (the dataset ranking's values), all heads. */
  mean_kl_rel_diff_max: number
  /** Entries below the floor, and their largest |a - b|. */
  kl_below_floor: number
  kl_abs_diff_max_below_floor: number
  /** Entries outside |a - b| <= 1e-4·max(|a|, |b|) + KL_ABS_TOLERANCE (0 = the engines agree). */
  kl_outside_tolerance: number
  kl_compared: number
  top10_equal: boolean
  top10: {a: string[]; b: string[]}
}

export const KL_FLOOR = 1e-2
export const KL_REL_TOLERANCE = 1e-4
export const KL_ABS_TOLERANCE = 2e-6

/** |x - y| <= 1e-4·max(|x|, |y|) + abs: the agreement test of every compared value. */
const within = (x: number, y: number, abs: number) => Math.abs(x - y) <= KL_REL_TOLERANCE * Math.max(Math.abs(x), Math.abs(y)) + abs

export function relativeDifference(a: number, b: number): number {
  const scale = Math.max(Math.abs(a), Math.abs(b))
  return scale === 0 ? 0 : Math.abs(a - b) / scale
}

export function compareShips(
  a: {kl: number[][]; ranking: string[]; meanKl: Map<string, number>},
  b: {kl: number[][]; ranking: string[]; meanKl: Map<string, number>},
  floor: number = KL_FLOOR,
): Agreement {
  if (a.kl.length !== b.kl.length) throw new RangeError(`the two scans cover ${a.kl.length} and ${b.kl.length} queries`)
  let rel = 0
  let below = 0
  let absBelow = 0
  let outside = 0
  let compared = 0
  for (const [q, row] of a.kl.entries()) {
    const other = b.kl[q]
    if (other.length !== row.length) throw new RangeError(`query ${q}: ${row.length} and ${other.length} heads`)
    for (const [i, x] of row.entries()) {
      const y = other[i]
      compared++
      if (Number.isNaN(x) || Number.isNaN(y)) {
        rel = Number.POSITIVE_INFINITY
        outside++
        continue
      }

      if (!within(x, y, KL_ABS_TOLERANCE)) outside++
      if (Math.max(Math.abs(x), Math.abs(y)) < floor) {
        below++
        absBelow = Math.max(absBelow, Math.abs(x - y))
      } else rel = Math.max(rel, relativeDifference(x, y))
    }
  }

  let meanRel = 0
  for (const [head, x] of a.meanKl) meanRel = Math.max(meanRel, relativeDifference(x, b.meanKl.get(head) ?? Number.NaN) || 0)
  const topA = a.ranking.slice(0, 10)
  const topB = b.ranking.slice(0, 10)
  return {
    kl_rel_diff_max: rel,
    mean_kl_rel_diff_max: meanRel,
    kl_below_floor: below,
    kl_abs_diff_max_below_floor: absBelow,
    kl_outside_tolerance: outside,
    kl_compared: compared,
    top10_equal: topA.length === topB.length && topA.every((h, i) => h === topB[i]),
    top10: {a: topA, b: topB},
  }
}

export interface StepAgreement {
  /** max over heads of |a - b| (degrees for angles, nats for kl). */
  score_abs_diff_max: number
  /** Heads whose scores differ by more than 1e-4·max(|a|, |b|) + the absolute tolerance of the score. */
  scores_outside_tolerance: number
  scores_compared: number
  chosen_equal: boolean
  /** The same head, or two heads whose scores are within the tolerance of each other under both engines. */
  chosen_agree: boolean
}

/**
 * Absolute tolerance per step score: 2e-6 for a mean KL (as Ships); 1e-4 degrees for angles,
 * about 10x the angle float32 hidden states give a head that changes nothing (~1e-5 degrees
 * on a random model, where UA barely changes near-uniform attention).
 */
export const STEP_ABS_TOLERANCE = {angles: 1e-4, kl: KL_ABS_TOLERANCE} as const

export function compareStep(
  a: {chosen: string; scores: Map<string, number>},
  b: {chosen: string; scores: Map<string, number>},
  kind: keyof typeof STEP_ABS_TOLERANCE,
): StepAgreement {
  const abs = STEP_ABS_TOLERANCE[kind]
  let diff = 0
  let outside = 0
  for (const [head, x] of a.scores) {
    const y = b.scores.get(head) ?? Number.NaN
    const d = Math.abs(x - y)
    diff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(diff, d)
    if (!within(x, y, abs)) outside++
  }

  const tie = (scores: Map<string, number>) => within(scores.get(a.chosen) ?? Number.NaN, scores.get(b.chosen) ?? Number.NaN, abs)
  const equal = a.chosen === b.chosen
  return {
    score_abs_diff_max: diff,
    scores_outside_tolerance: outside + Math.max(0, b.scores.size - a.scores.size),
    scores_compared: a.scores.size,
    chosen_equal: equal,
    chosen_agree: equal || (tie(a.scores) && tie(b.scores)),
  }
}

/** How many of the exact top-k heads a pre-filter's kept set contains. */
export function recall(exactTop: readonly string[], kept: readonly string[]): {hits: number; of: number; recall: number; missed: string[]} {
  const keep = new Set(kept)
  const missed = exactTop.filter((h) => !keep.has(h))
  const hits = exactTop.length - missed.length
  return {hits, of: exactTop.length, recall: exactTop.length === 0 ? 1 : hits / exactTop.length, missed}
}
