/**
 * Writes a report to disk: the HTML page, each heatmap as SVG and PNG, every table as CSV.
 * `sahara report` and `sahara run` (at the end of a sweep) both call writeReport; `sahara compare`
 * calls writeFiles with its own page and tables.
 */
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {basename, dirname, extname, join, resolve} from 'node:path'

import {repoRoot} from '../paths.js'
import {type Table, tableCsv} from './csv.js'
import {type HeatGrid, heatmapPixels, heatmapSvg} from './heatmap.js'
import {type Generated, reportHtml} from './html.js'
import {encodePng} from './png.js'
import {type ReportOptions, buildReport} from './report.js'
import {loadRun} from './run-data.js'

export type ReportFormat = 'html' | 'csv'

export interface WrittenFiles {
  html?: string
  /** SVG and PNG files of the heatmaps */
  heatmaps: string[]
  csv: string[]
}

export function generatedNow(): Generated {
  let sahara = 'unknown'
  try {
    sahara = (JSON.parse(readFileSync(resolve(repoRoot, 'package.json'), 'utf8')) as {version: string}).version
  } catch {
    // a report is still worth writing without the version
  }

  return {sahara, node: process.version, at: new Date().toISOString()}
}

/** Where a page's files go: beside it, in a folder named after it (report.html -> report/). */
export function assetsDir(htmlPath: string): string {
  return join(dirname(htmlPath), basename(htmlPath, extname(htmlPath)))
}

function writeHeatmaps(grids: readonly HeatGrid[], dir: string): string[] {
  if (grids.length === 0) return []
  mkdirSync(dir, {recursive: true})
  return grids.flatMap((grid) => {
    const svg = join(dir, `${grid.id}.svg`)
    const png = join(dir, `${grid.id}.png`)
    writeFileSync(svg, `<?xml version="1.0" encoding="UTF-8"?>\n${heatmapSvg(grid)}\n`)
    const {width, height, rgba} = heatmapPixels(grid)
    writeFileSync(png, encodePng(width, height, rgba))
    return [svg, png]
  })
}

export function writeTables(tables: readonly Table[], dir: string): string[] {
  mkdirSync(dir, {recursive: true})
  return tables.map((table) => {
    const path = join(dir, `${table.id}.csv`)
    writeFileSync(path, tableCsv(table))
    return path
  })
}

/** The page (html format) with its heatmaps, or the tables alone (csv format). */
export function writeFiles(page: {html: string; grids: readonly HeatGrid[]; tables: readonly Table[]}, htmlPath: string, format: ReportFormat): WrittenFiles {
  const assets = assetsDir(htmlPath)
  if (format === 'csv') return {heatmaps: [], csv: writeTables(page.tables, join(assets, 'tables'))}
  mkdirSync(dirname(htmlPath), {recursive: true})
  writeFileSync(htmlPath, page.html)
  return {html: htmlPath, heatmaps: writeHeatmaps(page.grids, join(assets, 'heatmaps')), csv: []}
}

/** Report on a run folder (sweep or job) into `out` (default <dir>/report.html); both formats with `formats`. */
export function writeReport(dir: string, options: ReportOptions & {out?: string; formats?: ReportFormat[]} = {}): WrittenFiles {
  const data = loadRun(dir)
  const report = buildReport(data, options)
  const htmlPath = resolve(options.out ?? join(data.dir, 'report.html'))
  const page = {html: reportHtml(report, generatedNow()), grids: report.heatmaps.flatMap((h) => h.grids), tables: report.tables}
  const written: WrittenFiles = {heatmaps: [], csv: []}
  for (const format of options.formats ?? ['html']) {
    const files = writeFiles(page, htmlPath, format)
    written.html ??= files.html
    written.heatmaps.push(...files.heatmaps)
    written.csv.push(...files.csv)
  }

  return written
}
