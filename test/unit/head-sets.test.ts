import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {readHeadsFrom} from '../../src/data/head-sets.js'
import {resultJson} from '../../src/orchestration/files.js'
import {headsFromSummary, parseHeadList, parseHeadsOption, resolveHeads} from '../../src/science/head-sets.js'
import {HeadNameError} from '../../src/science/heads.js'
import {makeRng, sample, uniformInt} from '../../src/science/prng.js'

const llama7b = {numLayers: 32, numHeads: 32}
const organism = {numLayers: 4, numHeads: 4}

describe('the seeded PRNG', () => {
  it('gives the same uint32 stream on every machine (golden values)', () => {
    const next = makeRng(1)
    expect([next(), next(), next()]).toEqual([2527132011, 314344336, 2535364964])
  })

  it('rejects seeds outside 0..2^32-1', () => {
    expect(() => makeRng(-1)).toThrow(/seed must be an integer/)
    expect(() => makeRng(1.5)).toThrow(/seed must be an integer/)
    expect(() => makeRng(2 ** 32)).toThrow(/seed must be an integer/)
  })

  it('draws integers in range, roughly uniformly', () => {
    const next = makeRng(7)
    const counts = new Array(6).fill(0)
    for (let i = 0; i < 60_000; i++) counts[uniformInt(next, 6)]++
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(400)
  })

  it('samples k distinct items, each item about equally often', () => {
    const items = Array.from({length: 16}, (_, i) => i)
    const counts = new Array(16).fill(0)
    for (let seed = 0; seed < 4000; seed++) {
      const s = sample(items, 3, seed)
      expect(new Set(s).size).toBe(3)
      for (const x of s) counts[x]++
    }
    for (const c of counts) expect(Math.abs(c - 750)).toBeLessThan(120)
  })
})

describe('--heads parsing', () => {
  it('reads a list of heads, with spaces', () => {
    expect(parseHeadList('L2H26, L3H8')).toEqual([
      {layer: 2, head: 26},
      {layer: 3, head: 8},
    ])
  })

  it('rejects bad names, empty entries and duplicates', () => {
    expect(() => parseHeadList('L2H26,,L3H8')).toThrow(HeadNameError)
    expect(() => parseHeadList('L2-H26')).toThrow(/bad head name "L2-H26"/)
    expect(() => parseHeadList('L1H2,L1H2')).toThrow(/head L1H2 given twice/)
  })

  it('random:K needs a seed; --avoid only with random', () => {
    expect(parseHeadsOption('random:3', {seed: 1, avoid: 'L1H2,L2H0'})).toEqual({
      kind: 'random',
      k: 3,
      seed: 1,
      avoid: [
        {layer: 1, head: 2},
        {layer: 2, head: 0},
      ],
    })
    expect(() => parseHeadsOption('random:3')).toThrow(/needs --seed/)
    expect(() => parseHeadsOption('random:0', {seed: 1})).toThrow(/K must be at least 1/)
    expect(() => parseHeadsOption('random:x', {seed: 1})).toThrow(/expected random:K/)
    expect(() => parseHeadsOption('L1H2', {avoid: 'L0H0'})).toThrow(/--avoid applies to --heads random:K only/)
    expect(() => parseHeadsOption('random:2', {seed: -3})).toThrow(/--seed/)
    expect(parseHeadsOption(undefined)).toEqual({kind: 'none'})
    expect(() => parseHeadsOption('  ')).toThrow(/--heads is empty/)
  })
})

describe('resolving a head set against the model', () => {
  it('names the head and the model\'s layers and heads when out of range', () => {
    const sel = parseHeadsOption('L1H2,L4H0')
    expect(() => resolveHeads(sel, organism, 'organism')).toThrow(
      'head L4H0 is out of range for model organism: it has 4 layers (L0..L3) and 4 heads per layer (H0..H3)',
    )
    expect(() => resolveHeads(parseHeadsOption('L0H7'), organism, 'organism')).toThrow(/head L0H7 is out of range/)
    expect(() => resolveHeads(parseHeadsOption('random:2', {seed: 0, avoid: 'L9H9'}), organism, 'organism')).toThrow(/--avoid head L9H9/)
  })

  it('random:K is deterministic for a seed, distinct, and avoids the given heads', () => {
    const sel = parseHeadsOption('random:3', {seed: 1})
    const a = resolveHeads(sel, llama7b, 'm')
    expect(a.heads).toEqual(resolveHeads(sel, llama7b, 'm').heads)
    expect(a.label).toBe('random:3 seed 1: L11H11,L30H29,L20H12')
    expect(resolveHeads(parseHeadsOption('random:3', {seed: 2}), llama7b, 'm').heads).not.toEqual(a.heads)
    for (let seed = 0; seed < 200; seed++) {
      const r = resolveHeads(parseHeadsOption('random:3', {seed, avoid: 'L1H2,L2H0'}), organism, 'organism')
      const names = r.heads.map((h) => `L${h.layer}H${h.head}`)
      expect(new Set(names).size).toBe(3)
      expect(names).not.toContain('L1H2')
      expect(names).not.toContain('L2H0')
    }
  })

  it('refuses to draw more heads than there are', () => {
    expect(() => resolveHeads(parseHeadsOption('random:15', {seed: 0, avoid: 'L0H0,L0H1'}), organism, 'organism')).toThrow(/only 14 heads to draw from/)
  })
})

describe('heads from a run folder', () => {
  const ships = {kind: 'ships', heads: [{layer: 1, head: 2, mean_kl: 3, topk_count: 9}, {layer: 2, head: 0, mean_kl: 2, topk_count: 8}, {layer: 0, head: 1, mean_kl: 0.1, topk_count: 1}]}
  const search = {group: [{layer: 2, head: 0}, {layer: 1, head: 2}], steps: []}

  it('a ships summary: its top-K heads by mean KL; K is required', () => {
    expect(headsFromSummary(ships, 2, 's.json')).toEqual({source: 'ships', heads: [{layer: 1, head: 2}, {layer: 2, head: 0}]})
    expect(() => headsFromSummary(ships, undefined, 's.json')).toThrow(/--top K/)
    expect(() => headsFromSummary(ships, 4, 's.json')).toThrow(/ranks 3 heads/)
  })

  it('a ships summary with a KL that was not finite ("Infinity" as written now, null as before) still gives its top heads', () => {
    const infinite = JSON.parse(resultJson({...ships, heads: [{...ships.heads[0], mean_kl: Number.POSITIVE_INFINITY}, ...ships.heads.slice(1)]})) as typeof ships
    expect(infinite.heads[0].mean_kl).toBe('Infinity')
    expect(headsFromSummary(infinite, 1, 's.json').heads).toEqual([{layer: 1, head: 2}])
    const older = {...ships, heads: [{...ships.heads[0], mean_kl: null}, ...ships.heads.slice(1)]}
    expect(headsFromSummary(older, 2, 's.json').heads).toEqual([{layer: 1, head: 2}, {layer: 2, head: 0}])
    expect(() => headsFromSummary({heads: [{layer: 1, head: 2}]}, 1, 's.json')).toThrow('"heads" must be a list of {layer, head, mean_kl}')
  })

  it('a search summary: its group, or a prefix of it', () => {
    expect(headsFromSummary(search, undefined, 'g.json').heads).toEqual([{layer: 2, head: 0}, {layer: 1, head: 2}])
    expect(headsFromSummary(search, 1, 'g.json').heads).toEqual([{layer: 2, head: 0}])
    expect(() => headsFromSummary({foo: 1}, 1, 'x.json')).toThrow(/x.json: neither a search summary/)
  })

  it('reads DIR/summary.json, with clear errors for a missing or broken file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sahara-heads-'))
    expect(() => readHeadsFrom(dir, 1)).toThrow(/no summary.json/)
    writeFileSync(join(dir, 'summary.json'), '{oops')
    expect(() => readHeadsFrom(dir, 1)).toThrow(/not valid JSON/)
    writeFileSync(join(dir, 'summary.json'), JSON.stringify(ships))
    expect(readHeadsFrom(dir, 1)).toEqual({kind: 'from', dir, source: 'ships', heads: [{layer: 1, head: 2}], top: 1})
  })
})
