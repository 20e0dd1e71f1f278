/**
 * Job kinds, lm-evaluation-harness style: a kind is one module that knows how to read its
 * options from a sweep (expanding its matrix into concrete jobs, validated before anything runs)
 * and how to run one job against a sidecar. Adding a kind = one module + one line below.
 */
import type {Fields} from '../config/fields.js'
import type {ResolvedModel} from '../models.js'
import type {Work} from '../orchestration/work.js'
import type {SidecarClient} from '../sidecar/client.js'
import {asrKind} from './asr.js'
import {searchKind} from './search.js'
import {shipsKind} from './ships.js'

export interface ParseContext {
  /** Relative paths in the sweep (datasets, models) resolve against the sweep file's folder. */
  baseDir: string
  /** Models are served by a sidecar at --endpoint: take their names as given, check nothing locally. */
  remoteModels?: boolean
}

/**
 * A job's use of another job's result (e.g. an asr job taking the heads a search found).
 * The sweep checks it before any work: the job exists, comes earlier, is of an accepted kind
 * and runs the same model; `bind` then receives the referenced job (and may reject it with
 * `error`, e.g. asking for more heads than a search finds).
 */
export interface JobReference {
  /** As written: a full job name, or the `name:` of a job entry. */
  job: string
  kinds: readonly string[]
  error(message: string): Error
  bind(target: JobSpec): void
}

/** One concrete job: a kind, a unique name, the model it needs a sidecar for, typed options. */
export interface JobSpec<P = unknown> {
  kind: string
  name: string
  /** The sweep entry this job came from: its `name:`, or its kind when unnamed (set by the sweep). */
  entry?: string
  model: ResolvedModel
  params: P
  /** Results of other jobs of the sweep this one reads. */
  needs?: JobReference[]
}

export interface RunContext {
  /** One sidecar of the pool, for calls not worth spreading or storing (ships and search still use it directly). */
  client: SidecarClient
  /**
   * The job's work units: spread over every sidecar of the pool, stored as they finish, reused on
   * a re-run. Absent: units run on `client` alone, unstored (workOf).
   */
  work?: Work
  /** The job's own output folder (created by the runner). */
  outDir: string
  /** The sweep's folder, holding every job's folder (sweep runs only). */
  sweepDir?: string
  log: (message: string) => void
  /** `done` of `total` units of this job finished, `what` in words (a bar or periodic line: src/cli/progress.ts). */
  progress?: (done: number, total: number, what: string) => void
}

export interface JobKind<P = unknown, R = unknown> {
  kind: string
  description: string
  /** Keys a job of this kind may have (besides `kind` and `name`). */
  keys: readonly string[]
  /** Read and validate one job entry (layered over the sweep's defaults) into concrete jobs. */
  parse(fields: Fields, context: ParseContext): JobSpec<P>[]
  /** Run one job; the result is the job's summary (also written into outDir). */
  run(job: JobSpec<P>, context: RunContext): Promise<R>
  /** One line saying what a finished job found (shown by `sahara run`); optional. */
  headline?(result: R): string
}

export const JOB_KINDS: Readonly<Record<string, JobKind<any, any>>> = {
  ships: shipsKind,
  search: searchKind,
  asr: asrKind,
}
