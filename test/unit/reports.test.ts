import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {inflateSync} from 'node:zlib'
import {describe, expect, it} from 'vitest'

import type {AsrReplyLine} from '../../src/jobs/asr.js'
import {colourAt, hex} from '../../src/reports/colour.js'
import {type Ranking, compareRankings, comparisonGrids, comparisonTables, jaccard, overlapAt, sharedTail, spearman} from '../../src/reports/compare.js'
import {csvField, safeId, tableCsv} from '../../src/reports/csv.js'
import {type HeatGrid, heatmapPixels, heatmapSvg, normalise} from '../../src/reports/heatmap.js'
import {escapeHtml, formatCell, tableHtml} from '../../src/reports/html.js'
import {PNG_SIGNATURE, crc32, encodePng} from '../../src/reports/png.js'
import {pickReplies, searchGrid, shipsGrids} from '../../src/reports/report.js'
import type {SearchJob, ShipsJob} from '../../src/reports/run-data.js'
import {RunDataError, readJobSummary} from '../../src/reports/run-data.js'

const logChooseRef = (n: number, k: number) => Array.from({length: k}, (_, i) => Math.log((n - i) / (i + 1))).reduce((a, b) => a + b, 0)

const grid = (over: Partial<HeatGrid> = {}): HeatGrid => ({
  id: 'g',
  title: 'Mean <KL> & co',
  layers: 2,
  heads: 3,
  values: [0.5, 1, Number.NaN, 0, 0.25, 2],
  format: (v) => v.toFixed(2),
  marks: [5],
  marksLabel: 'top 1',
  ...over,
})

describe('heatmap SVG', () => {
  it('has one cell per head with its value, escaped text, marks and a legend', () => {
    const svg = heatmapSvg(grid())
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true)
    expect(svg.match(/<rect class="cell"/g)).toHaveLength(6)
    expect(svg).toContain('data-head="L1H2"')
    expect(svg).toContain('<title>L1H2: 2.00</title>')
    expect(svg).toContain('<title>L0H2: n/a</title>')
    expect(svg).toContain('Mean &lt;KL&gt; &amp; co')
    expect(svg).not.toContain('<KL>')
    expect(svg.match(/<rect class="mark"/g)).toHaveLength(1)
    expect(svg).toContain('red frame: top 1')
    expect(svg).toContain('grey: no value')
    expect(svg).toContain(`fill="${hex(colourAt(1))}"`) // the maximum is the top colour
    expect(svg).toContain('fill="#c8c8c8"') // NaN is grey
    expect(svg.trim().endsWith('</svg>')).toBe(true)
  })

  it('normalises linearly from 0, or on a log scale floored at max x 1e-4', () => {
    expect(normalise([0, 1, 2, Number.NaN])).toEqual([0, 0.5, 1, Number.NaN])
    const log = normalise([1e-9, 1e-2, 1], 'log')
    expect(log[0]).toBe(0)
    expect(log[1]).toBeCloseTo(0.5)
    expect(log[2]).toBe(1)
    expect(normalise([0, 0])).toEqual([0, 0])
  })

  it('drops cell text on big grids (32 x 32) but keeps the tooltips', () => {
    const big = grid({layers: 32, heads: 32, values: Array.from({length: 1024}, (_, i) => i), marks: []})
    const svg = heatmapSvg(big)
    expect(svg.match(/<rect class="cell"/g)).toHaveLength(1024)
    expect(svg).not.toContain('pointer-events="none">1023<')
    expect(svg).toContain('<title>L31H31: 1023.00</title>')
  })
})

describe('PNG encoder', () => {
  it('round-trips: signature, IHDR, CRCs, and the inflated scanlines are the pixels', () => {
    const [w, h] = [3, 2]
    const rgba = new Uint8Array(Array.from({length: w * h * 4}, (_, i) => (i * 37) % 256))
    const png = encodePng(w, h, rgba)
    expect(png.subarray(0, 8)).toEqual(PNG_SIGNATURE)
    const chunks: {type: string; data: Buffer}[] = []
    for (let at = 8; at < png.length; ) {
      const length = png.readUInt32BE(at)
      const type = png.toString('ascii', at + 4, at + 8)
      const data = png.subarray(at + 8, at + 8 + length)
      expect(png.readUInt32BE(at + 8 + length)).toBe(crc32(png.subarray(at + 4, at + 8 + length)))
      chunks.push({type, data})
      at += 12 + length
    }

    expect(chunks.map((c) => c.type)).toEqual(['IHDR', 'IDAT', 'IEND'])
    const ihdr = chunks[0].data
    expect([ihdr.readUInt32BE(0), ihdr.readUInt32BE(4), ihdr[8], ihdr[9], ihdr[12]]).toEqual([3, 2, 8, 6, 0])
    const raw = inflateSync(chunks[1].data)
    expect(raw.length).toBe(h * (1 + w * 4))
    for (let y = 0; y < h; y++) {
      expect(raw[y * (1 + w * 4)]).toBe(0) // filter: none
      expect([...raw.subarray(y * (1 + w * 4) + 1, (y + 1) * (1 + w * 4))]).toEqual([...rgba.subarray(y * w * 4, (y + 1) * w * 4)])
    }
  })

  it('uses the standard CRC-32 and refuses wrong sizes', () => {
    expect(crc32(Buffer.from('IEND'))).toBe(0xae426082)
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926)
    expect(() => encodePng(2, 2, new Uint8Array(15))).toThrow(/expected 16 RGBA bytes/)
    expect(() => encodePng(0, 2, new Uint8Array(0))).toThrow(/positive integer/)
  })

  it('paints heatmap pixels: cell colours, white gaps, red frames on marks', () => {
    const {width, height, rgba} = heatmapPixels(grid(), 10)
    expect([width, height]).toEqual([31, 21])
    const at = (x: number, y: number) => [...rgba.subarray((y * width + x) * 4, (y * width + x) * 4 + 4)]
    expect(at(0, 0)).toEqual([255, 255, 255, 255])
    expect(at(15, 5)).toEqual([...colourAt(0.5), 255]) // L0H1 = 1 of max 2
    expect(at(25, 5)).toEqual([200, 200, 200, 255]) // L0H2: NaN
    expect(at(21, 11)).toEqual([228, 0, 43, 255]) // L1H2 marked: frame
    expect(at(25, 15)).toEqual([...colourAt(1), 255]) // its inside
  })
})

describe('CSV', () => {
  it('quotes what needs quoting (RFC 4180), CRLF lines, null and non-finite as empty', () => {
    expect(csvField('plain')).toBe('plain')
    expect(csvField('a,b')).toBe('"a,b"')
    expect(csvField('say "no"')).toBe('"say ""no"""')
    expect(csvField('two\nlines')).toBe('"two\nlines"')
    expect(csvField(null)).toBe('')
    expect(csvField(Number.NaN)).toBe('')
    expect(csvField(1e-7)).toBe('1e-7')
    expect(tableCsv({columns: ['k', 'heads'], rows: [[1, 'L1H2'], [2, 'L1H2,L2H0']]})).toBe('k,heads\r\n1,L1H2\r\n2,"L1H2,L2H0"\r\n')
    expect(safeId('asr 1/organism · ua')).toBe('asr_1_organism_ua')
  })
})

describe('HTML tables', () => {
  it('escape text, show a real column with 3 decimals and counts as integers', () => {
    const html = tableHtml({id: 't', title: 'T <1>', columns: ['k', 'asr', 'text'], rows: [[1, 1, '<b>'], [2, 0.5, null]]})
    expect(html).toContain('T &lt;1&gt;')
    expect(html).toContain('<td class="num" data-sort="1">1</td><td class="num" data-sort="1">1.000</td><td>&lt;b&gt;</td>')
    expect(html).toContain('<td>—</td>')
    expect(formatCell(0.001234)).toBe('1.23e-3')
    expect(formatCell(20480)).toBe('20,480')
    expect(escapeHtml(`"it's"`)).toBe('&quot;it&#39;s&quot;')
  })
})

describe('overlap of top-k heads', () => {
  const ranking = (order: string[], values: number[]): Ranking => ({
    label: 'x',
    job: 'j',
    dir: '/x',
    kind: 'ships',
    model: 'm',
    layers: 2,
    heads: 2,
    order: order.map((n) => ({layer: Number(n[1]), head: Number(n[3])})),
    values,
  })

  it('Jaccard, shared and exclusive heads, chance level k²/N', () => {
    expect(jaccard(new Set(['a', 'b']), new Set(['b', 'c']))).toBeCloseTo(1 / 3)
    expect(jaccard(new Set(), new Set())).toBe(1)
    const o = overlapAt(['L0H0', 'L1H1', 'L0H1'], ['L1H1', 'L1H0', 'L0H0'], 2, 4)
    expect(o).toMatchObject({k: 2, shared: ['L1H1'], onlyA: ['L0H0'], onlyB: ['L1H0'], jaccard: 1 / 3, expectedShared: 1})
    expect(o.pValue).toBeCloseTo(1 - 1 / 6) // two random 2-sets of 4 share nothing with p C(2,2)/C(4,2) = 1/6
  })

  it('hypergeometric tail: two random 5-sets of 16 heads share >= 4 with p 56/4368', () => {
    expect(sharedTail(16, 5, 4)).toBeCloseTo(56 / 4368, 12)
    expect(sharedTail(16, 5, 0)).toBeCloseTo(1, 12)
    expect(sharedTail(1024, 10, 1)).toBeCloseTo(1 - Math.exp(logChooseRef(1014, 10) - logChooseRef(1024, 10)), 10)
  })

  it('Spearman: 1 for the same order, -1 reversed, ties averaged, null when undefined', () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBeCloseTo(1)
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).toBeCloseTo(-1)
    expect(spearman([1, 1, 2, 3], [1, 2, 3, 4])).toBeCloseTo(0.9487, 3)
    expect(spearman([1, 2], [1, 2])).toBeNull()
    expect(spearman([1, 1, 1], [1, 2, 3])).toBeNull()
  })

  it('compares two rankings at every k, with grids and tables', () => {
    const a = ranking(['L1H0', 'L0H1', 'L0H0', 'L1H1'], [0.1, 0.5, 0.9, 0.05])
    const b = ranking(['L1H0', 'L0H0', 'L0H1', 'L1H1'], [0.6, 0.4, 0.8, 0.01])
    const c = compareRankings(a, b, 2)
    expect(c.byK.map((o) => o.shared.length)).toEqual([1, 1])
    expect(c.overlap).toMatchObject({k: 2, shared: ['L1H0'], onlyA: ['L0H1'], onlyB: ['L0H0']})
    expect(c.spearman).toBeCloseTo(0.8)
    const [ga, gb, both] = comparisonGrids(a, b, c)
    expect(ga.marks).toEqual([2, 1])
    expect(gb.marks).toEqual([2, 0])
    expect(both.values).toEqual([2, 1, 3, 0]) // L0H0 B only, L0H1 A only, L1H0 both
    const [overlap, ranks] = comparisonTables(a, b, c)
    expect(overlap.rows[1]).toEqual([2, 1, 0.333333, 1, 0.8333, 'L1H0', 'L0H1', 'L0H0'])
    expect(ranks.rows[0]).toEqual(['L1H0', 1, 0.9, 1, 0.8, 'yes', 'yes'])
    expect(() => compareRankings(a, {...b, layers: 3}, 2)).toThrow(/different head grids/)
  })
})

describe('example replies', () => {
  const line = (index: number, cleanRefused: boolean, ablatedRefused: boolean): AsrReplyLine => ({
    index,
    prompt: `p${index}`,
    clean: {reply: 'c', new_tokens: 1, stopped_at_eos: true, verdict: {refused: cleanRefused} as AsrReplyLine['clean']['verdict']},
    ablated: {reply: 'a', new_tokens: 1, stopped_at_eos: true, verdict: {refused: ablatedRefused} as AsrReplyLine['clean']['verdict']},
    flipped: cleanRefused && !ablatedRefused,
  })

  it('flipped first (two thirds), then one still refused and one the clean model answered', () => {
    const replies = [line(0, false, false), line(1, true, true), line(2, true, false), line(3, true, false), line(4, true, false), line(5, true, false), line(6, true, true)]
    expect(pickReplies(replies, 6).map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5])
    expect(pickReplies(replies, 3).map((r) => r.index)).toEqual([1, 2, 3])
    expect(pickReplies([line(1, true, true)], 6).map((r) => r.index)).toEqual([1])
  })
})

describe('job summaries read back', () => {
  it('a summary missing what the reports read is refused by name, not a crash deep in a heatmap', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sahara-summary-'))
    writeFileSync(join(dir, 'summary.json'), JSON.stringify({kind: 'ships', heads: [], num_layers: 0}))
    expect(() => readJobSummary(dir)).toThrow(RunDataError)
    expect(() => readJobSummary(dir)).toThrow('a ships summary without num_layers (a positive integer), num_heads (a positive integer)')
    writeFileSync(join(dir, 'summary.json'), JSON.stringify({kind: 'other'}))
    expect(readJobSummary(dir)).toBeUndefined() // not a job's folder
  })
})

describe('Ships grids', () => {
  const job = (logprobSupport?: number) =>
    ({
      name: 'scan',
      summary: {model: 'm', dataset: 'd', method: 'ua', top_k: 2, n_queries: 3, num_layers: 2, num_heads: 2, heads: [{layer: 1, head: 0, mean_kl: 0.5, topk_count: 3}], ...(logprobSupport === undefined ? {} : {logprob_support: logprobSupport})},
    }) as unknown as ShipsJob

  it('say in the title when the KL is over a support set (a lower bound), and not otherwise', () => {
    expect(shipsGrids(job(16))[0].title).toBe('Mean Ships (KL, 16-token support) — m · d · UA')
    expect(shipsGrids(job(0))[0].title).toBe('Mean Ships (KL) — m · d · UA')
    expect(shipsGrids(job())[0].title).toBe('Mean Ships (KL) — m · d · UA') // a summary from before the option
  })
})

describe('Sahara step-1 grids', () => {
  const job = (logprobSupport: number | null) =>
    ({
      name: 'greedy',
      summary: {model: 'm', dataset: 'd', method: 'ua', score: 'kl', num_layers: 1, num_heads: 2, group: [{layer: 0, head: 1}], logprob_support: logprobSupport},
      steps: [{step: 1, scores: [{layer: 0, head: 0, mean_kl: 0.1}, {layer: 0, head: 1, mean_kl: 0.4}]}],
    }) as unknown as SearchJob

  it('say in the title when the mean KL is over a support set, and put each head where it belongs', () => {
    expect(searchGrid(job(256))?.title).toBe('Sahara step 1 (each head alone), mean KL (256-token support) — m · d · UA')
    expect(searchGrid(job(null))?.title).toBe('Sahara step 1 (each head alone), mean KL — m · d · UA')
    expect(searchGrid(job(null))?.values).toEqual([0.1, 0.4])
  })
})
