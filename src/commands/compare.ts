import {Args, Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {SaharaCommand} from '../cli/base.js'
import {type Comparison, compareRankings, comparisonGrids, comparisonTables, loadRanking} from '../reports/compare.js'
import {compareHtml} from '../reports/html.js'
import {RunDataError} from '../reports/run-data.js'
import {type ReportFormat, type WrittenFiles, generatedNow, writeFiles} from '../reports/write.js'

export default class Compare extends SaharaCommand {
  static override description = `Do two runs single out the same safety heads? Compares the top-k heads of two rankings (two models, two
methods, two datasets): shared heads, Jaccard index at every k up to --top-k beside what random k-sets share (k²/N),
Spearman's rho of the full rankings, and a side-by-side heatmap. A run is a ships job folder (heads by mean KL) or a
search job folder (the group, in the order chosen), or a sweep folder with --job-a/--job-b naming the job (a unique
part of its name is enough).`

  static override examples = [
    '<%= config.bin %> compare runs/demo runs/demo --job-a ships-organism-jailbreakbench-ua --job-b ships-organism-jailbreakbench-sc',
    '<%= config.bin %> compare runs/ships-a runs/ships-b --top-k 5 --out /tmp/compare.html',
    '<%= config.bin %> compare runs/ships-a runs/ships-b --format csv --json',
  ]

  static override args = {
    a: Args.string({description: 'run A: a ships or search job folder, or a sweep folder (with --job-a)', required: true}),
    b: Args.string({description: 'run B: likewise (with --job-b)', required: true}),
  }

  static override flags = {
    'job-a': Flags.string({description: 'the job of run A, when A is a sweep folder (its name or a unique part of it)'}),
    'job-b': Flags.string({description: 'the job of run B, when B is a sweep folder'}),
    'top-k': Flags.integer({char: 'k', description: 'the top k heads of each ranking', default: 10, min: 1}),
    out: Flags.string({char: 'o', description: 'the HTML file; its heatmaps (SVG, PNG) or CSV tables go in a folder beside it named after it', default: 'compare.html'}),
    format: Flags.string({description: 'html: the page and its heatmaps; csv: the tables as CSV files', options: ['html', 'csv'], default: 'html'}),
  }

  async run(): Promise<Comparison & {files: WrittenFiles}> {
    const {args, flags} = await this.parse(Compare)
    this.quiet = flags.quiet
    let comparison: Comparison
    let files: WrittenFiles
    try {
      const a = loadRanking(args.a, flags['job-a'])
      const b = loadRanking(args.b, flags['job-b'])
      comparison = compareRankings(a, b, flags['top-k'])
      const grids = comparisonGrids(a, b, comparison)
      const tables = comparisonTables(a, b, comparison)
      const title = `Safety heads: ${a.model === b.model ? a.model : `${a.model} vs ${b.model}`}, top ${comparison.topK}`
      const subtitle = `A = ${a.label} · B = ${b.label}`
      files = writeFiles({html: compareHtml({title, subtitle, grids, tables}, generatedNow()), grids, tables}, resolve(flags.out), flags.format as ReportFormat)
    } catch (error) {
      if (error instanceof RunDataError) this.error(error.message, {exit: 2})
      throw error
    }

    const o = comparison.overlap
    this.log(`A: ${comparison.a.label}`)
    this.log(`B: ${comparison.b.label}`)
    this.log('')
    this.log('   k  shared  Jaccard  by chance   p(chance)  shared heads')
    for (const x of comparison.byK) {
      this.log(`${String(x.k).padStart(4)}  ${String(x.shared.length).padStart(6)}  ${x.jaccard.toFixed(3).padStart(7)}  ${x.expectedShared.toFixed(2).padStart(9)}  ${x.pValue.toPrecision(2).padStart(10)}  ${x.shared.join(',') || '—'}`)
    }

    this.log('')
    this.log(`top ${o.k}: ${o.shared.length} shared (Jaccard ${o.jaccard.toFixed(3)}); only A: ${o.onlyA.join(',') || '—'}; only B: ${o.onlyB.join(',') || '—'}`)
    this.log(`Spearman's rho of the full rankings: ${comparison.spearman === null ? 'n/a' : comparison.spearman.toFixed(3)}`)
    for (const file of [files.html, ...files.csv].filter(Boolean)) this.log(`written: ${file}`)
    return {...comparison, files}
  }
}
