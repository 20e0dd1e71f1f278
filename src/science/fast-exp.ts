/**
 * exp(x) in float64 within 2 ulp of Math.exp, about three times faster in V8, whose Math.exp is
 * a call into fdlibm (15-22 ns on the machines measured, ~5 ns here). The Ships KL needs one exp
 * per vocabulary entry of every ablated row: 3.3M on the organism's full scan, 3.3 billion on a
 * 7B model's, so this is the CLI's scoring time.
 *
 * Tang's table method: x = (64k + j)·ln2/64 + r with |r| <= ln2/128, so
 * exp(x) = 2^k · 2^(j/64) · exp(r); exp(r) - 1 is its degree-5 Taylor polynomial (truncation
 * error below 4e-17). The reduction splits ln2/64 in two parts (Cody-Waite), exact for every k
 * reached here. Outside (-708, 709), and for NaN, Math.exp answers.
 */

const STEPS = 64 // table entries per octave
const STEPS_PER_LN2 = STEPS / Math.LN2
// ln2 = LN2_HI + LN2_LO, LN2_HI with trailing zero bits (fdlibm's split), each divided by 64 exactly
const LN2_HI_STEP = 6.931_471_803_691_238_164_9e-1 / STEPS
const LN2_LO_STEP = 1.908_214_929_270_587_700_02e-10 / STEPS
const ROUND_SHIFT = 6_755_399_441_055_744 // 1.5·2^52: x + shift - shift rounds x to an integer
const FRACTIONS = Float64Array.from({length: STEPS}, (_, j) => 2 ** (j / STEPS))
const MIN_EXPONENT = -1075
const POWERS_OF_TWO = Float64Array.from({length: 1024 - MIN_EXPONENT + 1}, (_, i) => 2 ** (i + MIN_EXPONENT))

export function fastExp(x: number): number {
  if (!(x > -708 && x < 709)) return Math.exp(x)
  const steps = x * STEPS_PER_LN2 + ROUND_SHIFT - ROUND_SHIFT // nearest integer
  const k = steps | 0
  const r = x - steps * LN2_HI_STEP - steps * LN2_LO_STEP
  const r2 = r * r
  const expm1 = r + r2 * 0.5 + r2 * r * (1 / 6 + r * (1 / 24 + r * (1 / 120)))
  const fraction = FRACTIONS[k & (STEPS - 1)]
  return POWERS_OF_TWO[(k >> 6) - MIN_EXPONENT] * (fraction + fraction * expm1)
}
