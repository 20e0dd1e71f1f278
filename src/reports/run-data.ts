/**
 * Reads what a run left on disk, for reports and comparisons: a sweep folder (runs/<sweep>/, with
 * sweep.json and summary.json), a single job folder (ships, search or asr: its summary.json), or
 * any folder of job folders. Only reads; every file is the job's own output (src/jobs/*.ts).
 */
import {existsSync, readFileSync, readdirSync, statSync} from 'node:fs'
import {basename, join, resolve} from 'node:path'

import type {AsrReplyLine, AsrSummary} from '../jobs/asr.js'
import type {SearchSummary} from '../jobs/search.js'
import type {StepLine} from '../jobs/search-steps.js'
import type {ShipsSummary} from '../jobs/ships.js'
import type {SweepSummary} from './sweep-summary.js'

export class RunDataError extends Error {}

export interface JobDir<S> {
  name: string
  /** absolute */
  dir: string
  summary: S
}

export type ShipsJob = JobDir<ShipsSummary>
export interface SearchJob extends JobDir<SearchSummary> {
  /** search.jsonl: every step's full score table (empty when the file is missing). */
  steps: StepLine[]
}
export interface AsrJob extends JobDir<AsrSummary> {
  /** replies.jsonl (empty when missing) */
  replies: AsrReplyLine[]
}

export interface RunData {
  dir: string
  kind: 'sweep' | 'job' | 'folder'
  /** The sweep's summary.json (sweeps only). */
  sweep?: SweepSummary
  ships: ShipsJob[]
  searches: SearchJob[]
  asr: AsrJob[]
}

type AnySummary = ShipsSummary | SearchSummary | AsrSummary

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch (error) {
    throw new RunDataError(`${path}: ${(error as Error).message}`)
  }
}

/** JSON lines; a torn last line (a crash mid-write) is skipped. */
function readJsonl<T>(path: string): T[] {
  if (!existsSync(path)) return []
  const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '')
  const out: T[] = []
  for (const [i, line] of lines.entries()) {
    try {
      out.push(JSON.parse(line) as T)
    } catch (error) {
      if (i < lines.length - 1) throw new RunDataError(`${path}:${i + 1}: ${(error as Error).message}`)
    }
  }

  return out
}

const isJobSummary = (x: unknown): x is AnySummary => typeof x === 'object' && x !== null && ['ships', 'search', 'asr'].includes((x as {kind?: string}).kind ?? '')

/** What the reports read of each kind of summary: lists, and the geometry that sizes the heatmaps. */
const REQUIRED: Record<AnySummary['kind'], {lists: string[]; counts: string[]}> = {
  ships: {lists: ['heads'], counts: ['num_layers', 'num_heads']},
  search: {lists: ['group', 'steps'], counts: ['num_layers', 'num_heads']},
  asr: {lists: ['heads'], counts: ['num_layers', 'num_heads']},
}

/** A job folder's summary, or undefined when the folder holds none (not run yet, or not a job). */
export function readJobSummary(dir: string): AnySummary | undefined {
  const path = join(dir, 'summary.json')
  if (!existsSync(path)) return undefined
  const summary = readJson(path)
  if (!isJobSummary(summary)) return undefined
  const fields = summary as unknown as Record<string, unknown>
  const {lists, counts} = REQUIRED[summary.kind]
  const bad = [
    ...lists.filter((key) => !Array.isArray(fields[key])).map((key) => `${key} (a list)`),
    ...counts.filter((key) => !(Number.isInteger(fields[key]) && (fields[key] as number) > 0)).map((key) => `${key} (a positive integer)`),
  ]
  if (bad.length > 0) throw new RunDataError(`${path}: a ${summary.kind} summary without ${bad.join(', ')}; was it written by sahara?`)
  return summary
}

function addJob(data: RunData, name: string, dir: string, summary: AnySummary): void {
  switch (summary.kind) {
    case 'ships':
      data.ships.push({name, dir, summary})
      break
    case 'search':
      data.searches.push({name, dir, summary, steps: readJsonl<StepLine>(join(dir, 'search.jsonl'))})
      break
    case 'asr':
      data.asr.push({name, dir, summary, replies: readJsonl<AsrReplyLine>(join(dir, 'replies.jsonl'))})
      break
  }
}

export function loadRun(path: string): RunData {
  const dir = resolve(path)
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new RunDataError(`${path}: not a folder`)
  const data: RunData = {dir, kind: 'folder', ships: [], searches: [], asr: []}
  const own = readJobSummary(dir)
  if (own) {
    data.kind = 'job'
    addJob(data, basename(dir), dir, own)
    return data
  }

  // A sweep lists its jobs in order in sweep.json; any other folder: its sub-folders, by name.
  let names: string[]
  if (existsSync(join(dir, 'sweep.json'))) {
    data.kind = 'sweep'
    names = ((readJson(join(dir, 'sweep.json')) as {jobs?: {name: string}[]}).jobs ?? []).map((j) => j.name)
    if (existsSync(join(dir, 'summary.json'))) data.sweep = readJson(join(dir, 'summary.json')) as SweepSummary
  } else {
    names = readdirSync(dir, {withFileTypes: true}).filter((e) => e.isDirectory()).map((e) => e.name).sort()
  }

  for (const name of names) {
    const summary = readJobSummary(join(dir, name))
    if (summary) addJob(data, name, join(dir, name), summary)
  }

  if (data.ships.length + data.searches.length + data.asr.length === 0) {
    throw new RunDataError(`${path}: no finished job (no ships, search or asr summary.json in it or in its sub-folders)`)
  }

  return data
}
