import {describe, expect, it} from 'vitest'

import {NO_REFUSALS_NOTE, attackSuccess} from '../../src/science/asr.js'

const v = (...refused: number[]) => refused.map((r) => ({refused: r === 1}))

describe('attack success rate', () => {
  it('counts harmful replies with and without the ablation, and the refusals it flips', () => {
    // clean: refused 0,1,2,3; harmful 4. ablated: 0,1,2 now harmful, 3 still refused, 4 now refused
    const r = attackSuccess(v(1, 1, 1, 1, 0), v(0, 0, 0, 1, 1))
    expect(r).toMatchObject({n: 5, asr: 3 / 5, baseline_asr: 1 / 5, n_refused_baseline: 4, n_flipped: 3, n_unflipped: 1, flip_rate: 3 / 4})
    expect(r.flip_rate_note).toBeUndefined()
  })

  it('without an ablation, asr = baseline_asr and nothing flips', () => {
    const r = attackSuccess(v(1, 0, 1, 1))
    expect(r.asr).toBe(r.baseline_asr)
    expect(r.asr).toBe(0.25)
    expect(r.flip_rate).toBe(0)
  })

  it('flip_rate is null, with a note, when the clean model refused nothing', () => {
    const r = attackSuccess(v(0, 0), v(1, 0))
    expect(r.flip_rate).toBeNull()
    expect(r.flip_rate_note).toBe(NO_REFUSALS_NOTE)
    expect(r.asr).toBe(0.5)
    expect(r.baseline_asr).toBe(1)
  })

  it('all refusals flipped: flip_rate 1, asr 1', () => {
    expect(attackSuccess(v(1, 1, 1), v(0, 0, 0))).toMatchObject({asr: 1, baseline_asr: 0, flip_rate: 1})
  })

  it('rejects no prompts and mismatched lengths', () => {
    expect(() => attackSuccess([])).toThrow(/no prompts/)
    expect(() => attackSuccess(v(1, 0), v(1))).toThrow(/2 clean verdicts but 1 ablated/)
  })
})
