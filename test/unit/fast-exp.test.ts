import {describe, expect, it} from 'vitest'

import {fastExp} from '../../src/science/fast-exp.js'

const ULP = 2 ** -52

describe('fastExp', () => {
  it('is within 3 ulp of Math.exp over its whole table range', () => {
    let seed = 3
    const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31)
    let worst = 0
    for (let i = 0; i < 200_000; i++) {
      const x = -708 + rand() * 1417
      const want = Math.exp(x)
      worst = Math.max(worst, Math.abs(fastExp(x) - want) / want)
    }

    expect(worst).toBeLessThanOrEqual(3 * ULP)
    expect(worst).toBeGreaterThan(0) // it is its own approximation, not Math.exp
  })

  it('is exact or within an ulp where the table or the reduction meets its edges', () => {
    expect(fastExp(0)).toBe(1)
    for (const x of [Math.LN2 / 128, -Math.LN2 / 128, Math.LN2, 1, -1, 1e-300, -1e-12, 50.5, -700.25, 708.99, -707.99]) {
      expect(Math.abs(fastExp(x) - Math.exp(x)) / Math.exp(x), `x=${x}`).toBeLessThanOrEqual(3 * ULP)
    }
  })

  it('answers like Math.exp outside its range and for non-numbers', () => {
    expect(fastExp(Number.NaN)).toBeNaN()
    expect(fastExp(Number.NEGATIVE_INFINITY)).toBe(0)
    expect(fastExp(Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY)
    for (const x of [-708, -745, -800, 709, 709.7, 710]) expect(fastExp(x)).toBe(Math.exp(x))
  })
})
