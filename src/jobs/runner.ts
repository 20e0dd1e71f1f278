/**
 * Runs a validated sweep: jobs grouped by model (one pool of sidecars per model, started once),
 * each job into <runsDir>/<sweep>/<job>/, with the resolved plan in <runsDir>/<sweep>/sweep.json
 * and the sweep's summary (src/reports/sweep-summary.ts) in summary.json and summary.md,
 * rewritten after every job so an interrupted sweep still has one.
 *
 * Crash-safe: every finished work unit is in <sweep>/units.jsonl (src/orchestration/store.ts)
 * before it counts; re-running the sweep recomputes none of them. Each job's identity (kind,
 * model, dataset contents, options) is hashed; against the previous run's sweep.json the log says
 * which jobs are unchanged (their units are reused) and which changed (units whose keys the change
 * touches are computed again; a Ships unit's key is what its KLs depend on, so a changed top_k
 * recomputes nothing).
 */
import {existsSync, mkdirSync, readFileSync} from 'node:fs'
import {relative, resolve} from 'node:path'

import {writeFileAtomic} from '../orchestration/files.js'
import type {EndpointPool} from '../orchestration/pool.js'
import {UnitStore} from '../orchestration/store.js'
import {Work, type WorkCounts, hashKey} from '../orchestration/work.js'

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
  /** work units found in the store vs computed by this run */
  units: WorkCounts
}

export interface SweepOutcome {
  sweep: string
  dir: string
  jobs: JobOutcome[]
  summary: SweepSummary
  /** units over all jobs: reused from the store, computed now */
  units: WorkCounts
}

/** What a job's results depend on: its kind, model and options (datasets with their prompts). */
export function jobHash(job: JobSpec): string {
  return hashKey({kind: job.kind, model: job.model.source, params: job.params})
}

/** Compare with the previous run's sweep.json: which jobs are unchanged, changed or new. */
function compareWithPrevious(path: string, jobs: JobSpec[], hashes: Map<string, string>): {unchanged: string[]; changed: string[]; added: string[]} {
  let previous = new Map<string, string>()
  try {
    if (existsSync(path)) {
      const stored = JSON.parse(readFileSync(path, 'utf8')) as {jobs?: {name: string; hash?: string}[]}
      previous = new Map((stored.jobs ?? []).flatMap((j) => (j.hash ? [[j.name, j.hash] as [string, string]] : [])))
    }
  } catch {
    // an unreadable sweep.json only means nothing to compare with; the units store decides reuse
  }

  const result = {unchanged: [] as string[], changed: [] as string[], added: [] as string[]}
  for (const job of jobs) {
    const before = previous.get(job.name)
    if (before === undefined) result.added.push(job.name)
    else if (before === hashes.get(job.name)) result.unchanged.push(job.name)
    else result.changed.push(job.name)
  }

  return result
}

function finishedJob(dir: string, job: JobSpec, result: unknown): FinishedJob {
  return {spec: job, out: relative(dir, resolve(dir, job.name)), result, headline: JOB_KINDS[job.kind].headline?.(result) ?? 'done'}
}

/** The jobs the previous summary.json lists as done whose options are unchanged, with their results
 * read back from their folders' summary.json; a job whose files cannot be read is simply left out. */
function carriedOver(dir: string, sweep: Sweep, unchanged: Set<string>): Map<string, FinishedJob> {
  const carried = new Map<string, FinishedJob>()
  let done: string[] = []
  try {
    const previous = JSON.parse(readFileSync(resolve(dir, 'summary.json'), 'utf8')) as {jobs?: {name: string}[]}
    done = (previous.jobs ?? []).map((j) => j.name)
  } catch {
    return carried // no previous summary (or an unreadable one): nothing to carry over
  }

  for (const job of sweep.jobs) {
    if (!done.includes(job.name) || !unchanged.has(job.name)) continue
    try {
      carried.set(job.name, finishedJob(dir, job, JSON.parse(readFileSync(resolve(dir, job.name, 'summary.json'), 'utf8'))))
    } catch {
      // its result file is gone or unreadable: the job is listed again once it runs
    }
  }

  return carried
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
  withPool: <T>(job: JobSpec, fn: (pool: EndpointPool<SidecarClient>) => Promise<T>) => Promise<T>,
  log: (message: string) => void,
  /** Jobs done of the sweep's (the running job's share counted as a fraction). */
  progress?: (done: number, total: number, what: string) => void,
): Promise<SweepOutcome> {
  const {dir, byModel} = planSweep(sweep, runsDir)
  mkdirSync(dir, {recursive: true})
  const hashes = new Map(sweep.jobs.map((j) => [j.name, jobHash(j)]))
  const sweepJson = resolve(dir, 'sweep.json')
  const {unchanged, changed, added} = compareWithPrevious(sweepJson, sweep.jobs, hashes)
  if (unchanged.length + changed.length > 0) {
    log(`resuming ${dir}: ${unchanged.length} jobs unchanged (their stored units are reused), ${changed.length} changed, ${added.length} new`)
    for (const name of changed) log(`  changed since the last run (what the change affects is computed again): ${name}`)
  }

  writeFileAtomic(
    sweepJson,
    `${JSON.stringify({name: sweep.name, file: sweep.file, ...(sweep.extends ? {extends: sweep.extends} : {}), jobs: sweep.jobs.map((j) => ({name: j.name, kind: j.kind, model: j.model.name, hash: hashes.get(j.name)}))}, null, 2)}\n`,
  )
  const store = UnitStore.open(resolve(dir, 'units.jsonl'))
  if (store.stats.loaded > 0 || store.stats.skipped > 0) {
    log(`units store: ${store.stats.loaded} finished units read back${store.stats.skipped ? `, ${store.stats.skipped} torn record skipped` : ''}`)
  }

  const outcomes: JobOutcome[] = []
  // by job name: this run's, and those an earlier run finished with the same options (so that a run
  // that stops early does not drop them from the summary)
  const finishedByName = carriedOver(dir, sweep, new Set(unchanged))
  const startedAt = new Date().toISOString()
  const summarise = (): SweepSummary => {
    const finished = sweep.jobs.flatMap((j) => finishedByName.get(j.name) ?? [])
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
    writeFileAtomic(resolve(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`)
    writeFileAtomic(resolve(dir, 'summary.md'), sweepMarkdown(summary))
    return summary
  }

  summarise() // from the start, what this sweep as it now reads has finished (a changed job is not)
  let n = 0
  const total: WorkCounts = {reused: 0, computed: 0}
  try {
    for (const jobs of byModel.values()) {
      await withPool(jobs[0], async (pool) => {
        for (const job of jobs) {
          n++
          log(`[${n}/${sweep.jobs.length}] ${job.name}`)
          const out = resolve(dir, job.name)
          mkdirSync(out, {recursive: true})
          const work = new Work(pool, {name: job.name, key: hashes.get(job.name)!}, store)
          const jobsBefore = n - 1
          progress?.(jobsBefore, sweep.jobs.length, job.name)
          const jobProgress = (d: number, t: number, what: string) => progress?.(jobsBefore + (t > 0 ? Math.min(1, d / t) : 0), sweep.jobs.length, `${job.name}: ${what}`)
          const client = await pool.servingClient()
          const result = await JOB_KINDS[job.kind].run(job, {client, work, outDir: out, sweepDir: dir, log, progress: jobProgress}).catch((error: unknown) => {
            // what only the model can tell (its heads, its rank) fails here, not in validation: say which job
            if (error instanceof Error) error.message = `${sweep.file}: job ${job.name}: ${error.message}`
            throw error
          })
          total.reused += work.counts.reused
          total.computed += work.counts.computed
          outcomes.push({name: job.name, kind: job.kind, model: job.model.name, out, result, units: {...work.counts}})
          finishedByName.set(job.name, finishedJob(dir, job, result))
          summarise()
          progress?.(n, sweep.jobs.length, job.name)
        }
      })
    }
  } finally {
    store.close()
  }

  log(`work units: ${total.computed} computed, ${total.reused} reused from ${resolve(dir, 'units.jsonl')}`)
  return {sweep: sweep.name, dir, jobs: outcomes, summary: summarise(), units: total}
}
