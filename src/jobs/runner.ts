/**
 * Runs a validated sweep: jobs grouped by model (one sidecar per model, started once), each job
 * into <runsDir>/<sweep>/<job>/, with the resolved plan in <runsDir>/<sweep>/sweep.json and the
 * sweep's summary (src/reports/sweep-summary.ts) in summary.json and summary.md, rewritten after
 * every job so an interrupted sweep still has one.
 */
import {mkdirSync, renameSync, writeFileSync} from 'node:fs'
import {relative, resolve} from 'node:path'

import {type FinishedJob, type SweepSummary, asrTables, sweepMarkdown} from '../reports/sweep-summary.js'

import type {Sweep} from '../config/sweep.js'
import type {SidecarClient} from '../sidecar/client.js'
import {JOB_KINDS, type JobSpec} from './registry.js'

export interface JobOutcome {
  name: string
  kind: string
  model: string
  out: string
  result: unknown
}

export interface SweepOutcome {
  sweep: string
  dir: string
  jobs: JobOutcome[]
  summary: SweepSummary
}

/** Write via a temporary file and rename, so a reader never sees half a summary. */
function writeAtomically(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text)
  renameSync(`${path}.tmp`, path)
}

export function planSweep(sweep: Sweep, runsDir: string): {dir: string; byModel: Map<string, JobSpec[]>} {
  const dir = resolve(runsDir, sweep.name)
  const byModel = new Map<string, JobSpec[]>()
  for (const job of sweep.jobs) {
    const list = byModel.get(job.model.source) ?? []
    list.push(job)
    byModel.set(job.model.source, list)
  }

  return {dir, byModel}
}

export async function runSweep(
  sweep: Sweep,
  runsDir: string,
  withClient: <T>(job: JobSpec, fn: (client: SidecarClient) => Promise<T>) => Promise<T>,
  log: (message: string) => void,
): Promise<SweepOutcome> {
  const {dir, byModel} = planSweep(sweep, runsDir)
  mkdirSync(dir, {recursive: true})
  writeFileSync(
    resolve(dir, 'sweep.json'),
    `${JSON.stringify({name: sweep.name, file: sweep.file, jobs: sweep.jobs.map((j) => ({name: j.name, kind: j.kind, model: j.model.name}))}, null, 2)}\n`,
  )
  const outcomes: JobOutcome[] = []
  const finished: FinishedJob[] = []
  const startedAt = new Date().toISOString()
  const summarise = (): SweepSummary => {
    const summary: SweepSummary = {
      sweep: sweep.name,
      file: sweep.file,
      ...(sweep.description ? {description: sweep.description} : {}),
      started_at: startedAt,
      updated_at: new Date().toISOString(),
      jobs_total: sweep.jobs.length,
      jobs_done: finished.length,
      jobs: finished.map((f) => ({name: f.spec.name, kind: f.spec.kind, entry: f.spec.entry, model: f.spec.model.name, out: f.out, headline: f.headline})),
      asr_tables: asrTables(finished, sweep.jobs),
    }
    writeAtomically(resolve(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`)
    writeAtomically(resolve(dir, 'summary.md'), sweepMarkdown(summary))
    return summary
  }

  let n = 0
  for (const jobs of byModel.values()) {
    await withClient(jobs[0], async (client) => {
      for (const job of jobs) {
        n++
        log(`[${n}/${sweep.jobs.length}] ${job.name}`)
        const out = resolve(dir, job.name)
        mkdirSync(out, {recursive: true})
        const result = await JOB_KINDS[job.kind].run(job, {client, outDir: out, sweepDir: dir, log})
        outcomes.push({name: job.name, kind: job.kind, model: job.model.name, out, result})
        finished.push({spec: job, out: relative(dir, out), result, headline: JOB_KINDS[job.kind].headline?.(result) ?? 'done'})
        summarise()
      }
    })
  }

  return {sweep: sweep.name, dir, jobs: outcomes, summary: summarise()}
}
