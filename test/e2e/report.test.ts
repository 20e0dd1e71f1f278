/**
 * Reports from a real run: a small sweep on the organism (Ships UA and SC, Sahara S = 2, ASR of
 * the Ships top 2 and of random 2-head sets, 20 prompts), run by `sahara run`, which writes
 * report.html, its heatmaps (SVG, PNG) and the CSV tables; then `sahara report` on one job folder,
 * `sahara compare` of UA against SC, and the page opened in headless Chromium (Debian's
 * /usr/bin/chromium, driven by playwright-core): heatmaps, tables and examples are there, the
 * flipped-only filter works, and a screenshot is saved (its path is printed).
 */
import {existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {beforeAll, describe, expect, it} from 'vitest'

import {cli, skipIntegration} from '../helpers.js'

const CHROMIUM = '/usr/bin/chromium'
/** The browser test runs wherever Chromium is installed, and must run in CI (scripts/setup.sh installs it). */
const skipBrowser = skipIntegration || (!existsSync(CHROMIUM) && process.env.CI !== 'true')

const SWEEP = `name: small
defaults:
  matrix: {model: organism, dataset: jailbreakbench, eps: 1e-5, template: paper}
  limit: 20
jobs:
  - kind: ships
    name: ships
    matrix: {method: [ua, sc]}
  - kind: search
    name: sahara
    steps: 2
    matrix: {method: ua}
  - kind: asr
    name: asr-ships
    heads_from_job: ships
    top: [2]
    max_new_tokens: 24
    matrix: {method: ua}
  - kind: asr
    name: asr-random
    heads: random:2
    seed: [1, 2]
    max_new_tokens: 24
    matrix: {method: ua}
`

const PNG_SIGNATURE = '89504e470d0a1a0a'

describe.skipIf(skipIntegration)('reports from a real sweep on the organism', () => {
  let dir: string
  let sweepDir: string

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sahara-report-'))
    writeFileSync(join(dir, 'small.yaml'), SWEEP)
    const result = await cli(['run', join(dir, 'small.yaml'), '--runs-dir', join(dir, 'runs'), '--json'], {timeoutMs: 600_000})
    expect(result.exitCode, result.stderr).toBe(0)
    sweepDir = join(dir, 'runs', 'small')
    expect(JSON.parse(result.stdout).report).toBe(join(sweepDir, 'report.html'))
  }, 600_000)

  it('sahara run wrote report.html with heatmaps, trace, ASR table, examples and environment; SVG, PNG and CSV beside it', () => {
    const html = readFileSync(join(sweepDir, 'report.html'), 'utf8')
    expect(html).not.toMatch(/<(script|link|img)[^>]+(src|href)=["']?https?:/) // self-contained
    expect(html.match(/<svg[^>]*class="heatmap"/g)).toHaveLength(5) // 2 per ships job, 1 for the search
    expect(html).toContain('<section id="trace">')
    expect(html).toContain('data-table="asr-1-organism-jailbreakbench-ua"')
    expect(html).toMatch(/class="example flipped"/)
    expect(html).toContain('transformers')

    const heatmaps = readdirSync(join(sweepDir, 'report', 'heatmaps')).sort()
    expect(heatmaps).toContain('ships-organism-jailbreakbench-ua-1e-5-mean-ships.svg')
    expect(heatmaps.filter((f) => f.endsWith('.png'))).toHaveLength(5)
    for (const png of heatmaps.filter((f) => f.endsWith('.png'))) {
      expect(readFileSync(join(sweepDir, 'report', 'heatmaps', png)).subarray(0, 8).toString('hex')).toBe(PNG_SIGNATURE)
    }

    const asrCsv = readFileSync(join(sweepDir, 'report', 'tables', 'asr-1-organism-jailbreakbench-ua.csv'), 'utf8').split('\r\n')
    expect(asrCsv[0]).toBe('heads_from,k,heads,asr,increase,flip_rate,n_flipped,random_asr_mean,random_asr_sd,random_repeats,random_increase_mean,random_flip_rate_mean,parameters_percent,parameters_modified')
    expect(asrCsv[1]).toMatch(/^ships \(Ships top-k\),2,"L1H2,L2H0",/)
    expect(asrCsv[1].split(',').at(-1)).toBe('8192') // 2 heads x 32 rows x 128 of W_q
    const ships = readFileSync(join(sweepDir, 'report', 'tables', 'ships-ships-organism-jailbreakbench-ua-1e-5.csv'), 'utf8').split('\r\n')
    expect(ships).toHaveLength(1 + 16 + 1)
  })

  it('sahara report on a single job folder; --format csv writes only tables', async () => {
    const out = join(dir, 'one', 'ships.html')
    const html = await cli(['report', join(sweepDir, 'ships-organism-jailbreakbench-sc-1e-5'), '--out', out, '--json'])
    expect(html.exitCode, html.stderr).toBe(0)
    expect(JSON.parse(html.stdout)).toMatchObject({html: out, csv: []})
    expect(readFileSync(out, 'utf8').match(/class="heatmap"/g)).toHaveLength(2)
    const csv = await cli(['report', sweepDir, '--format', 'csv', '--out', join(dir, 'csv', 'r.html'), '--json'])
    expect(csv.exitCode, csv.stderr).toBe(0)
    const files = JSON.parse(csv.stdout) as {html?: string; csv: string[]}
    expect(files.html).toBeUndefined()
    expect(files.csv.map((f) => f.split('/').at(-1))).toContain('examples.csv')
    const bad = await cli(['report', dir])
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr).toContain('no finished job')
  })

  it('sahara compare: UA and SC share the planted pair in their top 2', async () => {
    const out = join(dir, 'compare', 'ua-sc.html')
    const result = await cli(['compare', sweepDir, sweepDir, '--job-a', 'ships-organism-jailbreakbench-ua', '--job-b', 'ships-organism-jailbreakbench-sc', '--top-k', '2', '--out', out, '--json'])
    expect(result.exitCode, result.stderr).toBe(0)
    const c = JSON.parse(result.stdout)
    expect([...c.overlap.shared].sort()).toEqual(['L1H2', 'L2H0'])
    expect(c.overlap.jaccard).toBe(1)
    expect(c.byK).toHaveLength(2)
    expect(readFileSync(out, 'utf8').match(/class="heatmap"/g)).toHaveLength(3)
    const ambiguous = await cli(['compare', sweepDir, sweepDir])
    expect(ambiguous.exitCode).toBe(2)
    expect(ambiguous.stderr).toContain('name one with --job-a')
  })

  it.skipIf(skipBrowser)('the page in headless Chromium: heatmaps, tables and examples render; the filter works; screenshot saved', {timeout: 120_000}, async () => {
    const {chromium} = await import('playwright-core')
    const browser = await chromium.launch({executablePath: CHROMIUM, args: ['--no-sandbox']})
    try {
      const page = await browser.newPage({viewport: {width: 1280, height: 900}})
      const errors: string[] = []
      page.on('pageerror', (e) => errors.push(e.message))
      const requests: string[] = []
      page.on('request', (r) => requests.push(r.url()))
      await page.goto(`file://${join(sweepDir, 'report.html')}`)
      expect(await page.title()).toBe('Sahara sweep small')
      expect(await page.locator('svg.heatmap').count()).toBe(5)
      expect(await page.locator('svg.heatmap rect.cell').count()).toBe(5 * 16)
      const box = await page.locator('svg.heatmap').first().boundingBox()
      expect(box!.width).toBeGreaterThan(200) // laid out, not collapsed
      expect(await page.locator('svg.trace circle.step').count()).toBe(2)
      expect(await page.locator('#asr table.data tbody tr').count()).toBeGreaterThanOrEqual(1)
      expect(await page.locator('#asr table.data').first().textContent()).toContain('L1H2,L2H0')
      const examples = page.locator('.example')
      expect(await examples.count()).toBeGreaterThan(0)
      expect(await page.locator('.example.flipped').first().textContent()).toContain('flipped')
      const visible = async () => page.locator('.example:visible').count()
      const before = await visible()
      await page.locator('#only-flipped').check()
      expect(await visible()).toBe(await page.locator('.example.flipped').count())
      expect(await visible()).toBeLessThanOrEqual(before)
      await page.locator('#only-flipped').uncheck()
      // sorting a table by a column reorders its rows
      const ships = page.locator('table[data-table="ships-ships-organism-jailbreakbench-ua-1e-5"]')
      await ships.locator('th', {hasText: 'rank'}).click()
      await ships.locator('th', {hasText: 'rank'}).click()
      expect(await ships.locator('tbody tr td').first().textContent()).toBe('16')
      expect(errors).toEqual([])
      expect(requests.every((u) => u.startsWith('file://'))).toBe(true) // nothing fetched
      const shot = join(dir, 'report-screenshot.png')
      await page.screenshot({path: shot, fullPage: true})
      expect(readFileSync(shot).subarray(0, 8).toString('hex')).toBe(PNG_SIGNATURE)
      console.log(`report screenshot: ${shot}`)
    } finally {
      await browser.close()
    }
  })
})
