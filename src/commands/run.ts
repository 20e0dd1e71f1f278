import {Args, Flags} from '@oclif/core'
import {join} from 'node:path'

import {SaharaCommand} from '../cli/base.js'
import {poolFlags, withPool} from '../cli/sidecar-pool.js'
import {sidecarFlags} from '../cli/sidecar-session.js'
import {type Sweep, loadSweep} from '../config/sweep.js'
import {type SweepOutcome, runSweep} from '../jobs/runner.js'
import {JOB_KINDS} from '../jobs/registry.js'
import {parseEndpoints} from '../orchestration/endpoints.js'
import {asrTableMarkdown} from '../reports/sweep-summary.js'
import {writeReport} from '../reports/write.js'

export default class Run extends SaharaCommand {
  static override description = `Run every job of a YAML sweep, each into <runs-dir>/<sweep>/<job>/.
The whole sweep is validated first (every error says file:line:col and the field); nothing runs if any job is wrong.
Jobs of one model share one sidecar. See configs/demo-ships.yaml for the format.`

  static override examples = [
    '<%= config.bin %> run configs/demo-ships.yaml',
    '<%= config.bin %> run configs/demo-ships.yaml --runs-dir /tmp/runs --json',
    '<%= config.bin %> run configs/demo-ships.yaml --dry-run',
  ]

  static override args = {
    sweep: Args.string({description: 'the sweep YAML file', required: true}),
  }

  static override flags = {
    'runs-dir': Flags.string({description: 'where run folders go', default: 'runs'}),
    'dry-run': Flags.boolean({description: 'validate and list the jobs, run nothing', default: false}),
    ...sidecarFlags,
    ...poolFlags,
  }

  async run(): Promise<(SweepOutcome & {report?: string}) | {sweep: string; jobs: {name: string; kind: string; model: string}[]}> {
    const {args, flags} = await this.parse(Run)
    this.quiet = flags.quiet
    let sweep: Sweep
    try {
      sweep = loadSweep(args.sweep, {remoteModels: flags.endpoint !== undefined})
      if (flags.endpoint) parseEndpoints([flags.endpoint])
    } catch (error) {
      this.fail(error)
    }

    if (flags['dry-run']) {
      for (const job of sweep.jobs) this.log(`${job.kind.padEnd(6)} ${job.name}`)
      return {sweep: sweep.name, jobs: sweep.jobs.map((j) => ({name: j.name, kind: j.kind, model: j.model.name}))}
    }

    const endpoints = flags.endpoint ? [flags.endpoint] : sweep.endpoints
    if (endpoints && new Set(sweep.jobs.map((j) => j.model.source)).size > 1) {
      this.error('endpoints serve one model, but this sweep uses several; run without endpoints, or split the sweep', {exit: 2})
    }

    let outcome: SweepOutcome
    try {
      outcome = await runSweep(
        sweep,
        flags['runs-dir'],
        (job, fn) =>
          withPool(job.model, {...flags, endpoints, unitTimeoutS: flags['unit-timeout'], log: (m) => this.progress(m)}, fn),
        (m) => this.progress(m),
        (d, t, what) => this.advance(d, t, what, 'jobs'),
      )
    } catch (error) {
      this.fail(error)
    }

    for (const job of outcome.jobs) {
      this.log(`${job.name}: ${JOB_KINDS[job.kind]?.headline?.(job.result) ?? 'done'}`)
    }

    for (const table of outcome.summary.asr_tables) this.log(`\n${asrTableMarkdown(table)}\n`)
    this.log(`work units: ${outcome.units.computed} computed, ${outcome.units.reused} reused from the store`)
    this.log(`${outcome.jobs.length} jobs written under ${outcome.dir} (summary: ${join(outcome.dir, 'summary.md')}, summary.json)`)
    // The report (src/reports/): report.html with its heatmaps, and every table as CSV in report/tables/.
    let report: string | undefined
    try {
      report = writeReport(outcome.dir, {formats: ['html', 'csv']}).html
      this.log(`report: ${report}`)
    } catch (error) {
      this.warn(`no report written: ${(error as Error).message}`)
    }

    return {...outcome, ...(report ? {report} : {})}
  }
}
