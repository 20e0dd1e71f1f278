/**
 * Runs a validated sweep: jobs grouped by model (one sidecar per model, started once), each job
 * into <runsDir>/<sweep>/<job>/, with the resolved plan in <runsDir>/<sweep>/sweep.json.
 */
import {mkdirSync, writeFileSync} from 'node:fs'
import {resolve} from 'node:path'

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
      }
    })
  }

  return {sweep: sweep.name, dir, jobs: outcomes}
}
