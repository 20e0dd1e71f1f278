import {describe, expect, it} from 'vitest'

import {allHeads, checkHead, formatHead, parseHead} from '../../src/science/heads.js'
import {rankHeads, topKHeads} from '../../src/science/ships.js'
import {formatEps, planRequests} from '../../src/jobs/ships.js'

const g = {numLayers: 2, numHeads: 3} // 6 heads: index = layer*3 + head

describe('head names', () => {
  it('formats and parses L{layer}H{head}', () => {
    expect(formatHead({layer: 2, head: 26})).toBe('L2H26')
    expect(parseHead('L2H26')).toEqual({layer: 2, head: 26})
    expect(parseHead(' L0H0 ')).toEqual({layer: 0, head: 0})
  })

  it.each(['l2h26', 'L2', 'H3', 'L-1H2', 'L2H', 'L2H26x', '', 'L1.5H2'])('rejects %j with a clear message', (bad) => {
    expect(() => parseHead(bad)).toThrow(/bad head name .*expected L\{layer\}H\{head\} with 0-based integers, e.g. L2H26/)
  })

  it('checks ranges against the model', () => {
    expect(() => parseHead('L2H0', g)).toThrow('head L2H0: layer 2 out of range, the model has 2 layers (0..1)')
    expect(() => parseHead('L1H3', g)).toThrow('head L1H3: head 3 out of range, the model has 3 heads per layer (0..2)')
    expect(() => checkHead({layer: 1, head: 2}, g)).not.toThrow()
  })

  it('lists all heads layer-major', () => {
    expect(allHeads(g).map(formatHead)).toEqual(['L0H0', 'L0H1', 'L0H2', 'L1H0', 'L1H1', 'L1H2'])
  })
})

describe('per-query top-k', () => {
  it('returns the k largest, largest first, ties in scan order', () => {
    const kl = [0.1, 0.5, 0.5, 0.0, 0.9, 0.2]
    expect(topKHeads(kl, g, 3)).toEqual([
      {layer: 1, head: 1, kl: 0.9},
      {layer: 0, head: 1, kl: 0.5},
      {layer: 0, head: 2, kl: 0.5},
    ])
    expect(topKHeads(kl, g, 10)).toHaveLength(6)
  })

  it('checks its input', () => {
    expect(() => topKHeads([1, 2], g, 1)).toThrow('expected 6 KL values (L=2 x H=3), got 2')
    expect(() => topKHeads([1, 2, 3, 4, 5, 6], g, 0)).toThrow(/top-k must be an integer >= 1/)
  })
})

describe('dataset ranking', () => {
  it('ranks all heads by mean KL with top-k counts', () => {
    // Three queries, top-2 each:
    //   q0: top2 = L1H1 (0.9), L0H1 (0.5)
    //   q1: top2 = L0H0 (0.8), L1H1 (0.6)
    //   q2: top2 = L1H1 (0.3), L1H2 (0.2)
    const perQuery = [
      [0.1, 0.5, 0.0, 0.0, 0.9, 0.0],
      [0.8, 0.0, 0.1, 0.0, 0.6, 0.0],
      [0.0, 0.1, 0.0, 0.0, 0.3, 0.2],
    ]
    const ranked = rankHeads(perQuery, g, 2)
    expect(ranked).toHaveLength(6)
    // mean KL: L1H1 = 1.8/3 = 0.6, L0H0 = 0.9/3 = 0.3, L0H1 = 0.6/3 = 0.2, L1H2 = 0.2/3, L0H2 = 0.1/3, L1H0 = 0
    expect(ranked.map((h) => formatHead(h))).toEqual(['L1H1', 'L0H0', 'L0H1', 'L1H2', 'L0H2', 'L1H0'])
    expect(ranked[0]).toEqual({layer: 1, head: 1, mean_kl: expect.closeTo(0.6, 12), topk_count: 3})
    expect(ranked[1]).toMatchObject({mean_kl: expect.closeTo(0.3, 12), topk_count: 1})
    expect(ranked[2]).toMatchObject({mean_kl: expect.closeTo(0.2, 12), topk_count: 1})
    expect(ranked[3]).toMatchObject({mean_kl: expect.closeTo(0.2 / 3, 12), topk_count: 1})
    expect(ranked[4]).toMatchObject({topk_count: 0})
    // Every query contributes exactly k to the counts.
    expect(ranked.reduce((s, h) => s + h.topk_count, 0)).toBe(3 * 2)
  })

  it('breaks ties in mean KL by top-k count, then scan order', () => {
    const ranked = rankHeads([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]], g, 1)
    // L0H0 and L1H2 both have mean 0.5 and the second query's top-1 is L0H0 (all-zero tie -> scan order)
    expect(ranked.slice(0, 2).map((h) => [formatHead(h), h.topk_count])).toEqual([['L0H0', 2], ['L1H2', 0]])
  })

  it('puts a NaN KL (non-finite log-probs) last, and keeps every finite one in order around it', () => {
    expect(topKHeads([Number.NaN, 3, 5, Number.POSITIVE_INFINITY, Number.NaN, -1], g, 6).map(formatHead)).toEqual(['L1H0', 'L0H2', 'L0H1', 'L1H2', 'L0H0', 'L1H1'])
    // L0H0 mean 5 (never a top-1), L0H1 mean 3 (top-1 twice), L0H2 NaN (top-1 once): no cycle
    const perQuery = [
      [10, 4, 20, 0, 0, 0],
      [0, 2, Number.NaN, 0, 0, 0],
      [5, 3, 1, 0, 0, 0],
    ]
    perQuery[2][1] = 6
    const ranked = rankHeads(perQuery, g, 1).map((h) => formatHead(h))
    expect(ranked[0]).toBe('L0H0')
    expect(ranked[1]).toBe('L0H1')
    expect(ranked.at(-1)).toBe('L0H2')
  })

  it('needs queries', () => {
    expect(() => rankHeads([], g, 1)).toThrow('no queries')
  })
})

describe('request planning', () => {
  const heads = allHeads({numLayers: 4, numHeads: 8}) // 32 heads
  it('puts all heads in one request when they fit, and chunks prompts', () => {
    const plan = planRequests(heads, 1000, 33 * 1000 * 5)
    expect(plan.headGroups).toHaveLength(1)
    expect(plan.promptsPerRequest).toBe(5)
    // and caps prompts per request, for progress
    expect(planRequests(heads, 10, 2 ** 27).promptsPerRequest).toBe(32)
    expect(planRequests(heads, 10, 2 ** 27, 8).promptsPerRequest).toBe(8)
  })

  it('splits heads into groups when one prompt exceeds the budget (each with the clean row)', () => {
    const plan = planRequests(heads, 1000, 11 * 1000)
    expect(plan.headGroups.map((g) => g.length)).toEqual([10, 10, 10, 2])
    expect(plan.promptsPerRequest).toBe(1)
  })

  it('formats eps for job names', () => {
    expect(formatEps(1e-5)).toBe('1e-5')
    expect(formatEps(0.0001)).toBe('1e-4')
    expect(formatEps(2.5e-10)).toBe('2.5e-10')
    expect(formatEps(1)).toBe('1e0')
  })
})
