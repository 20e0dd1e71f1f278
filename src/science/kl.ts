/**
 * Query-level Ships (METHOD.md, paper Eq. 9): KL(p_clean || p_ablated) between two next-token
 * distributions at the last prompt position, over the full vocabulary.
 *
 * Inputs are float32 log-prob rows as the sidecar sends them; all arithmetic is float64
 * (JavaScript numbers). The authors' code adds 1e-12 to both probability vectors and does not
 * renormalise; that is the default here (`smoothing`), and `smoothing: 0` gives the exact KL.
 * Pure functions, no I/O.
 */
import {fastExp} from './fast-exp.js'

/** The authors' additive smoothing constant, added to both distributions, no renormalisation. */
export const DEFAULT_SMOOTHING = 1e-12

export interface KlOptions {
  /** Added to every probability of both distributions before the KL (0 = exact KL). */
  smoothing?: number
}

/** A row of log-probs: a Float32Array (view) or any array of numbers. */
export type LogprobRow = ArrayLike<number>

/** The smoothing of `options` (default: the authors'), checked. */
function smoothingOf(options: KlOptions): number {
  const smoothing = options.smoothing ?? DEFAULT_SMOOTHING
  if (!(Number.isFinite(smoothing) && smoothing >= 0)) {
    throw new RangeError(`smoothing must be a finite number >= 0, got ${smoothing}`)
  }

  return smoothing
}

function checkSameLength(n: number, ablated: LogprobRow): void {
  if (ablated.length !== n) {
    throw new RangeError(`log-prob rows differ in length: clean has ${n}, ablated has ${ablated.length}`)
  }
}

/**
 * KL(clean || ablated) = sum_v p_v * (log p_v - log q_v), with p = exp(clean) + s,
 * q = exp(ablated) + s.
 *
 * With s = 0 it is computed in log space, p_v * (clean_v - ablated_v), so no precision is lost
 * to exp/log round trips; terms with p_v = 0 contribute 0, and p_v > 0 with q_v = 0 gives
 * Infinity (the exact answer).
 */
export function klDivergence(clean: LogprobRow, ablated: LogprobRow, options: KlOptions = {}): number {
  const smoothing = smoothingOf(options)
  const n = clean.length
  checkSameLength(n, ablated)

  let sum = 0
  if (smoothing === 0) {
    for (let v = 0; v < n; v++) {
      const lp = clean[v]
      if (lp === Number.NEGATIVE_INFINITY) continue // p_v = 0 contributes nothing
      const p = Math.exp(lp)
      if (p === 0) continue
      sum += p * (lp - ablated[v])
    }
  } else {
    for (let v = 0; v < n; v++) {
      const p = Math.exp(clean[v]) + smoothing
      const q = Math.exp(ablated[v]) + smoothing
      sum += p * Math.log(p / q)
    }
  }

  return sum
}

/** Below this, log1p(x) = x - x²/2 + x³/3 to float64 precision (the next term is under 3e-17). */
const SERIES_LIMIT = 1e-4
const ONE_THIRD = 1 / 3 // a multiplication, not a division, in the inner loop

/**
 * log(exp(b) + s) for s > 0, to float64 rounding, mostly without a logarithm: it equals
 * b + log1p(x) with x = s·exp(-b), and where x < 1e-4 (b > ln s + 9.2: every token more likely
 * than ~1e-8 when s = 1e-12, 98-99% of a small model's vocabulary) log1p is its first three
 * terms: one exp (fastExp) instead of an exp and a log. Less likely tokens take a log and a
 * second fastExp (on a 32000-token vocabulary where half of them do, 35-40 ns per entry instead
 * of 46-53 with Math.exp).
 */
export function logSmoothed(b: number, s: number): number {
  const x = s * fastExp(-b)
  return x < SERIES_LIMIT ? b + x * (1 - x * (0.5 - x * ONE_THIRD)) : Math.log(fastExp(b) + s)
}

/** KL(clean || ablated) for one fixed clean row against any number of ablated rows. */
export type KlFromClean = (ablated: LogprobRow) => number

/**
 * The arithmetic of klDivergence with the clean distribution's p and log p computed once, for
 * scoring many ablations of one query, and log q by logSmoothed (equal to float64 rounding).
 * With smoothing 0 it is klDivergence's exact log-space KL.
 */
export function klFrom(clean: LogprobRow, options: KlOptions = {}): KlFromClean {
  const smoothing = smoothingOf(options)
  if (smoothing === 0) return (ablated) => klDivergence(clean, ablated, options)

  const n = clean.length
  const p = new Float64Array(n)
  const logP = new Float64Array(n)
  for (let v = 0; v < n; v++) {
    p[v] = Math.exp(clean[v]) + smoothing
    logP[v] = Math.log(p[v])
  }

  return (ablated) => {
    checkSameLength(n, ablated)
    const pv = p, logPv = logP, s = smoothing // locals, not closure slots, in the inner loop
    let sum = 0
    for (let v = 0; v < n; v++) sum += pv[v] * (logPv[v] - logSmoothed(ablated[v], s))
    return sum
  }
}

/**
 * KL for every ablated row of one query against its clean row, from one flat [rows, vocab]
 * block (row 0 is the clean model, rows 1.. the ablations): returns rows - 1 values.
 */
export function klAgainstClean(
  block: Float32Array,
  rows: number,
  vocab: number,
  options: KlOptions = {},
): Float64Array {
  if (block.length !== rows * vocab) {
    throw new RangeError(`block has ${block.length} floats, expected rows*vocab = ${rows}*${vocab}`)
  }

  const kl = klFrom(block.subarray(0, vocab), options)
  const out = new Float64Array(rows - 1)
  for (let r = 1; r < rows; r++) out[r - 1] = kl(block.subarray(r * vocab, (r + 1) * vocab))
  return out
}

/**
 * klAgainstClean for `queries` consecutive [rows, vocab] blocks: [queries * (rows - 1)],
 * query-major (what one Ships request returns, scored inline or on a KL thread).
 */
export function klOfQueries(logprobs: Float32Array, queries: number, rows: number, vocab: number, options: KlOptions = {}): Float64Array<ArrayBuffer> {
  checkQueryBlocks(logprobs, queries, rows, vocab)
  const block = rows * vocab

  const out = new Float64Array(queries * (rows - 1))
  for (let q = 0; q < queries; q++) out.set(klAgainstClean(logprobs.subarray(q * block, (q + 1) * block), rows, vocab, options), q * (rows - 1))
  return out
}

/** `queries` blocks of [rows, vocab] floats is exactly what `logprobs` holds. */
export function checkQueryBlocks(logprobs: Float32Array, queries: number, rows: number, vocab: number): void {
  if (logprobs.length !== queries * rows * vocab) {
    throw new RangeError(`log-probs hold ${logprobs.length} floats, expected queries*rows*vocab = ${queries}*${rows}*${vocab}`)
  }
}
