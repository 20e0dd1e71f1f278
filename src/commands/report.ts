import {Args, Flags} from '@oclif/core'
import {relative} from 'node:path'

import {SaharaCommand} from '../cli/base.js'
import {RunDataError} from '../reports/run-data.js'
import {type ReportFormat, type WrittenFiles, writeReport} from '../reports/write.js'

export default class Report extends SaharaCommand {
  static override description = `One self-contained HTML page of a run: layer x head heatmaps of mean Ships and top-k counts,
the Sahara traces, the ASR tables by number of heads beside random sets and the parameter share, example replies
(prompt, clean, ablated, verdict; flipped first) and the configuration and environment. Works on a sweep folder
(runs/<sweep>/) or a single job folder. Heatmaps are also written as SVG and PNG beside the page (report/heatmaps/);
--format csv writes every table as CSV instead (report/tables/).`

  static override examples = [
    '<%= config.bin %> report runs/demo',
    '<%= config.bin %> report runs/demo/ships-organism-jailbreakbench-ua-1e-5 --out /tmp/ships.html',
    '<%= config.bin %> report runs/demo --format csv',
  ]

  static override args = {
    run: Args.string({description: 'a sweep folder or a job folder (ships, search or asr)', required: true}),
  }

  static override flags = {
    out: Flags.string({char: 'o', description: 'the HTML file (default <run>/report.html); its files go in a folder beside it named after it'}),
    format: Flags.string({description: 'html: the page and its heatmaps (SVG, PNG); csv: every table as a CSV file', options: ['html', 'csv'], default: 'html'}),
    'example-jobs': Flags.integer({description: 'asr jobs whose replies are shown (most flips first)', default: 4, min: 0}),
    examples: Flags.integer({description: 'replies shown per job (flipped first)', default: 6, min: 1}),
  }

  async run(): Promise<WrittenFiles> {
    const {args, flags} = await this.parse(Report)
    this.quiet = flags.quiet
    let written: WrittenFiles
    try {
      written = writeReport(args.run, {out: flags.out, formats: [flags.format as ReportFormat], exampleJobs: flags['example-jobs'], examplesPerJob: flags.examples})
    } catch (error) {
      if (error instanceof RunDataError) this.error(error.message, {exit: 2})
      throw error
    }

    const show = (p: string) => relative(process.cwd(), p) || p
    if (written.html) this.log(`report: ${show(written.html)}`)
    if (written.heatmaps.length > 0) this.log(`heatmaps: ${written.heatmaps.length / 2} as SVG and PNG in ${show(written.heatmaps[0].replace(/\/[^/]+$/, ''))}`)
    for (const file of written.csv) this.log(`table: ${show(file)}`)
    return written
  }
}
