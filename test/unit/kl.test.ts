import {describe, expect, it} from 'vitest'

import {DEFAULT_SMOOTHING, klAgainstClean, klDivergence, klFrom, logSmoothed} from '../../src/science/kl.js'

const logs = (ps: number[]) => Float32Array.from(ps.map(Math.log))

describe('klDivergence', () => {
  it('matches a hand-computed case (exact, smoothing 0)', () => {
    // p = (1/2, 1/4, 1/4), q = (1/4, 1/4, 1/2)
    // KL(p||q) = 1/2*ln(2) + 1/4*ln(1) + 1/4*ln(1/2) = (1/2 - 1/4) ln 2 = ln(2)/4 = 0.17328679513998632
    const kl = klDivergence(logs([0.5, 0.25, 0.25]), logs([0.25, 0.25, 0.5]), {smoothing: 0})
    expect(kl).toBeCloseTo(Math.LN2 / 4, 7) // float32 inputs: ~1e-8 relative
    expect(kl).toBeCloseTo(0.17328679513998632, 7)
  })

  it('is zero for identical rows and positive otherwise', () => {
    const p = logs([0.1, 0.2, 0.3, 0.4])
    expect(klDivergence(p, p, {smoothing: 0})).toBe(0)
    expect(klDivergence(p, p)).toBe(0)
    expect(klDivergence(p, logs([0.4, 0.3, 0.2, 0.1]), {smoothing: 0})).toBeGreaterThan(0)
  })

  it('is asymmetric: KL(p||q) != KL(q||p)', () => {
    const p = logs([0.9, 0.1])
    const q = logs([0.5, 0.5])
    // KL(p||q) = .9 ln 1.8 + .1 ln .2 = 0.36806..., KL(q||p) = .5 ln(5/9) + .5 ln 5 = 0.51082...
    expect(klDivergence(p, q, {smoothing: 0})).toBeCloseTo(0.9 * Math.log(1.8) + 0.1 * Math.log(0.2), 6)
    expect(klDivergence(q, p, {smoothing: 0})).toBeCloseTo(0.5 * Math.log(5 / 9) + 0.5 * Math.log(5), 6)
  })

  it('defaults to the authors\' smoothing: 1e-12 added to both, no renormalisation', () => {
    expect(DEFAULT_SMOOTHING).toBe(1e-12)
    // p = (1, 0), q = (0, 1): exact KL is infinite; smoothed it is
    //   (1 + 1e-12) ln((1 + 1e-12)/1e-12) + 1e-12 ln(1e-12/(1 + 1e-12)) ~= ln(1e12) = 27.631...
    const p = Float32Array.from([0, Number.NEGATIVE_INFINITY])
    const q = Float32Array.from([Number.NEGATIVE_INFINITY, 0])
    expect(klDivergence(p, q, {smoothing: 0})).toBe(Number.POSITIVE_INFINITY)
    const s = 1e-12
    const expected = (1 + s) * Math.log((1 + s) / s) + s * Math.log(s / (1 + s))
    expect(klDivergence(p, q)).toBeCloseTo(expected, 9)
    expect(klDivergence(p, q)).toBeCloseTo(12 * Math.LN10, 6)
  })

  it('smoothing changes small values measurably only where probabilities are tiny', () => {
    const p = logs([0.5, 0.25, 0.25])
    const q = logs([0.25, 0.25, 0.5])
    const exact = klDivergence(p, q, {smoothing: 0})
    const smoothed = klDivergence(p, q)
    expect(Math.abs(exact - smoothed)).toBeLessThan(1e-11)
    // A large smoothing visibly shrinks the divergence (both distributions move toward uniform mass).
    expect(klDivergence(p, q, {smoothing: 0.5})).toBeLessThan(exact)
  })

  it('treats zero-probability clean tokens as contributing nothing (exact KL)', () => {
    const p = Float32Array.from([0, Number.NEGATIVE_INFINITY]) // (1, 0)
    const q = logs([0.5, 0.5])
    expect(klDivergence(p, q, {smoothing: 0})).toBeCloseTo(Math.LN2, 7)
  })

  it('rejects rows of different length and bad smoothing', () => {
    expect(() => klDivergence([0, 0], [0], {smoothing: 0})).toThrow(/differ in length: clean has 2, ablated has 1/)
    expect(() => klDivergence([0], [0], {smoothing: -1})).toThrow(/smoothing must be/)
    expect(() => klDivergence([0], [0], {smoothing: Number.NaN})).toThrow(/smoothing must be/)
  })
})

describe('klAgainstClean', () => {
  it('scores every ablated row of a [rows, vocab] block against row 0', () => {
    const block = new Float32Array([...logs([0.5, 0.25, 0.25]), ...logs([0.5, 0.25, 0.25]), ...logs([0.25, 0.25, 0.5])])
    const kl = klAgainstClean(block, 3, 3, {smoothing: 0})
    expect(kl).toBeInstanceOf(Float64Array)
    expect(kl.length).toBe(2)
    expect(kl[0]).toBe(0)
    expect(kl[1]).toBeCloseTo(Math.LN2 / 4, 7)
  })

  it('checks the block size', () => {
    expect(() => klAgainstClean(new Float32Array(5), 2, 3)).toThrow(/expected rows\*vocab = 2\*3/)
  })
})

describe('klFrom', () => {
  it('scores any number of rows against one clean row, as klDivergence does', () => {
    const clean = logs([0.5, 0.25, 0.25])
    const rows = [logs([0.5, 0.25, 0.25]), logs([0.25, 0.25, 0.5]), logs([0.1, 0.8, 0.1])]
    for (const smoothing of [0, DEFAULT_SMOOTHING, 1e-3]) {
      const kl = klFrom(clean, {smoothing})
      for (const row of rows) expect(kl(row)).toBeCloseTo(klDivergence(clean, row, {smoothing}), 14)
    }

    expect(klFrom(clean, {smoothing: 0})(rows[1])).toBeCloseTo(Math.LN2 / 4, 7)
  })

  it('rejects a row of another length and bad smoothing', () => {
    for (const smoothing of [0, 1e-12]) {
      expect(() => klFrom([0, 0], {smoothing})([0])).toThrow(/differ in length: clean has 2, ablated has 1/)
    }

    expect(() => klFrom([0], {smoothing: -1})).toThrow(/smoothing must be/)
    expect(() => klFrom([0], {smoothing: Number.NaN})).toThrow(/smoothing must be/)
  })
})

describe('klAgainstClean agrees with klDivergence row by row', () => {
  it('on random distributions, smoothed and exact', () => {
    let seed = 7
    const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31)
    const vocab = 50
    const rows = 4
    const block = new Float32Array(rows * vocab)
    for (let r = 0; r < rows; r++) {
      const raw = Array.from({length: vocab}, () => rand() ** 4)
      const z = raw.reduce((a, b) => a + b, 0)
      for (let v = 0; v < vocab; v++) block[r * vocab + v] = Math.log(raw[v] / z)
    }

    for (const smoothing of [0, 1e-12, 1e-3]) {
      const kl = klAgainstClean(block, rows, vocab, {smoothing})
      for (let r = 1; r < rows; r++) {
        const direct = klDivergence(block.subarray(0, vocab), block.subarray(r * vocab, (r + 1) * vocab), {smoothing})
        expect(kl[r - 1]).toBeCloseTo(direct, 12)
        expect(kl[r - 1]).toBeGreaterThan(0)
      }
    }
  })
})

describe('logSmoothed', () => {
  it('equals log(exp(b) + s) to float64 rounding, on both sides of its series limit', () => {
    // The direct formula's own error is about eps absolute (its exp is rounded), so the bound is
    // a few eps times max(1, |value|).
    for (const s of [1e-12, 1e-3]) {
      for (let b = -60; b <= 1e-6; b += 0.0173) {
        const direct = Math.log(Math.exp(b) + s)
        expect(Math.abs(logSmoothed(b, s) - direct), `b=${b} s=${s}`).toBeLessThanOrEqual(4 * Number.EPSILON * Math.max(1, Math.abs(direct)))
      }
    }

    expect(logSmoothed(Number.NEGATIVE_INFINITY, 1e-12)).toBe(Math.log(1e-12))
    expect(logSmoothed(0, 1e-12)).toBe(1e-12 - 0.5e-24)
    expect(logSmoothed(Number.NaN, 1e-12)).toBeNaN()
  })

  it('keeps the Ships KL of a 32000-token vocabulary equal to the direct formula', () => {
    let seed = 11
    const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31)
    const vocab = 32_000
    const block = new Float32Array(3 * vocab)
    for (let r = 0; r < 3; r++) {
      const logits = Array.from({length: vocab}, (_, v) => rand() * 12 + (v === 7 ? 14 - r : 0))
      const lse = Math.log(logits.reduce((z, l) => z + Math.exp(l), 0))
      for (let v = 0; v < vocab; v++) block[r * vocab + v] = logits[v] - lse
    }

    const kl = klAgainstClean(block, 3, vocab)
    for (let r = 1; r < 3; r++) {
      const direct = klDivergence(block.subarray(0, vocab), block.subarray(r * vocab, (r + 1) * vocab))
      expect(Math.abs(kl[r - 1] - direct)).toBeLessThanOrEqual(1e-12 * direct)
    }
  })
})
