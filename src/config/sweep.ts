/**
 * YAML sweeps: a named list of jobs, validated into typed objects before any work starts.
 *
 *   name: demo-ships                # required: letters, digits, . _ -; the folder runs/<name>/
 *   description: ...                # optional
 *   vars: {MODEL: organism}         # optional: ${MODEL} / ${MODEL:-default} in any string value;
 *                                   #   the environment overrides (src/config/variables.ts)
 *   defaults:                       # optional: any job key, layered under every job
 *     top_k: 10
 *     matrix: {eps: 1e-5}           # matrix axes are layered key by key too
 *   jobs:                           # required, non-empty
 *     - kind: ships                 # a registered job kind (src/jobs/registry.ts)
 *       name: scan                  # optional prefix of the derived job names
 *       matrix:                     # each axis a value or a list; jobs = the cross product
 *         model: [organism, organism-natural]
 *         dataset: [jailbreakbench, ./prompts.csv]
 *         method: [ua, sc]          # ua | sc | mean (default ua)
 *         eps: [1e-5]               # positive finite (default 1e-5)
 *         template: paper           # paper | direct | chat (default paper)
 *       top_k: 10                   # per-query top-k (default 10)
 *       limit: 50                   # only the first N prompts (default: all)
 *       smoothing: 1e-12            # added to both distributions in the KL (default 1e-12; 0 = exact)
 *       logprob_support: 0          # K > 0: KL over each prompt's K likeliest clean tokens + the rest (a lower bound;
 *                                   #   default 0 = every token); ships, and search with score: kl
 *
 * `endpoints: [gpu1:50051, dns:///sahara-sidecar.sahara.svc.cluster.local:50051]` runs the sweep
 * on those sidecars (--endpoint overrides it); without, local sidecars are started per model.
 *
 * A sweep can reuse another's jobs: a file with `extends: base.yaml` (relative to it), a `name`,
 * optionally `description` and `vars`, runs base.yaml's jobs with its vars over base.yaml's (e.g.
 * configs/paper/*.yaml: one study, one file per model).
 *
 * A job can use an earlier job's result: an asr job with `heads_from_job: <name>` and
 * `top: [1, 2, 3]` runs once per top-k with the first k heads of that ships job (by mean KL) or
 * search job (its group), read when it runs. <name> is a full job name or the `name:` of a job
 * entry (matched exactly, on the same model and dataset, then method, eps, template); a missing,
 * later, other-kind or other-model job, or a top larger than a search's steps, is an error at
 * that line before any work.
 *
 * Each concrete job is named from its matrix cell, e.g. `scan-organism-jailbreakbench-ua-1e-5`,
 * and runs into runs/<sweep>/<job>/. Relative dataset and model paths resolve against the sweep
 * file's folder. Every error is a ConfigError: `file:line:col: field.path: what is wrong`.
 */
import {readFileSync} from 'node:fs'
import {dirname, resolve} from 'node:path'
import {LineCounter, type Node, isMap, isSeq, parseDocument} from 'yaml'

import {JOB_KINDS, type JobSpec} from '../jobs/registry.js'
import {parseEndpoints} from '../orchestration/endpoints.js'
import {ConfigError, Fields, type Source, describeNode, errorAt, pathJoin} from './fields.js'
import {type Variables, readVars, substitute} from './variables.js'

export interface Sweep {
  name: string
  description?: string
  file: string
  /** The files this sweep extends, nearest first (their jobs are this sweep's jobs). */
  extends?: string[]
  /** Sidecars to run on (host:port or dns:///name:port); absent: local sidecars are started. */
  endpoints?: string[]
  jobs: JobSpec[]
}

const TOP_KEYS = ['name', 'description', 'vars', 'endpoints', 'defaults', 'jobs', 'extends'] as const
const EXTENDING_KEYS = ['extends', 'name', 'description', 'vars', 'endpoints'] as const
const MAX_EXTENDS_DEPTH = 8
/** Names folders: letters, digits, ".", "_", "-", but not "." or ".." (which would leave the runs folder). */
const NAME = /^(?!\.{1,2}$)[\w.-]+$/

export function loadSweep(file: string, options: SweepOptions = {}): Sweep {
  const path = resolve(file)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new ConfigError(path, 1, 1, '', `cannot read the sweep file: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`)
  }

  return parseSweep(text, path, options)
}

export interface SweepOptions {
  remoteModels?: boolean
  /** Where ${NAME} values come from first (default: process.env); then `vars:`, then `:-` defaults. */
  env?: Variables
  /** Set when this file is extended by another: its name, description and vars win. */
  extendedBy?: {file: string; name: string; description?: string; vars: Record<string, string>; endpoints?: string[]; depth: number}
}

export function parseSweep(text: string, file: string, options: SweepOptions = {}): Sweep {
  const lines = new LineCounter()
  const doc = parseDocument(text, {lineCounter: lines, prettyErrors: false, uniqueKeys: true})
  const source: Source = {file, lines}
  const first = doc.errors[0]
  if (first) {
    const {line, col} = lines.linePos(first.pos[0])
    throw new ConfigError(file, line, col, '', `invalid YAML: ${first.message.split('\n')[0]}`)
  }

  const root = doc.contents as Node | null
  if (!isMap(root)) throw errorAt(source, root, '', `a sweep is a mapping with keys ${TOP_KEYS.join(', ')}; got ${describeNode(root)}`)
  const top = Fields.ofMap(source, root, '')
  top.onlyKeys(TOP_KEYS, 'a sweep')
  const vars = {...readVars(source, root.get('vars', true) as Node | undefined), ...options.extendedBy?.vars}
  const env = options.env ?? process.env
  substitute(source, root, (name) => env[name] ?? vars[name])
  const name = options.extendedBy?.name ?? top.string('name', {pattern: NAME, patternHint: 'use letters, digits, ".", "_" and "-", not "." or ".." (it names the run folder)'}).value
  const description = options.extendedBy ? options.extendedBy.description : top.optionalString('description')?.value
  const endpoints = options.extendedBy?.endpoints ?? readEndpoints(top)
  // jobs on served models: their names are the sidecars' business, nothing is checked locally
  const remoteModels = options.remoteModels || endpoints !== undefined
  if (top.has('extends')) {
    return extendSweep(top, file, {...options, remoteModels, extendedBy: {file, name, description, vars, endpoints, depth: options.extendedBy?.depth ?? 0}})
  }

  const defaultsNode = root.get('defaults', true) as Node | undefined
  if (defaultsNode !== undefined && !isMap(defaultsNode)) {
    throw errorAt(source, defaultsNode, 'defaults', `expected a mapping, got ${describeNode(defaultsNode)}`)
  }

  const jobsNode = root.get('jobs', true) as Node | undefined
  if (jobsNode === undefined) throw errorAt(source, root, '', 'missing required key "jobs"')
  if (!isSeq(jobsNode)) throw errorAt(source, jobsNode, 'jobs', `expected a list of jobs, got ${describeNode(jobsNode)}`)
  if (jobsNode.items.length === 0) throw errorAt(source, jobsNode, 'jobs', 'no jobs: give at least one')

  const baseDir = dirname(file)
  const jobs: JobSpec[] = []
  const seen = new Map<string, string>()
  for (const [i, item] of jobsNode.items.entries()) {
    const path = pathJoin('jobs', i)
    const jobNode = item as Node | null
    if (!isMap(jobNode)) throw errorAt(source, jobNode, path, `expected a job mapping, got ${describeNode(jobNode)}`)
    const layers = [...(defaultsNode && isMap(defaultsNode) ? [{map: defaultsNode, path: 'defaults'}] : []), {map: jobNode, path}]
    const fields = new Fields(source, layers, {node: jobNode, path})
    const kindName = fields.string('kind', {oneOf: Object.keys(JOB_KINDS)}).value
    const kind = JOB_KINDS[kindName]
    fields.onlyKeys(['kind', 'name', ...kind.keys], `a ${kindName} job`)
    if (fields.has('name')) fields.string('name', {pattern: NAME, patternHint: 'use letters, digits, ".", "_" and "-", not "." or ".."'})
    for (const job of kind.parse(fields, {baseDir, remoteModels})) {
      const previous = seen.get(job.name)
      if (previous !== undefined) {
        throw fields.error(fields.has('name') ? 'name' : 'kind', `job name ${job.name} is produced twice (also by ${previous}); give the jobs different names`)
      }

      seen.set(job.name, path)
      jobs.push({...job, entry: fields.has('name') ? fields.string('name').value : kindName})
    }
  }

  bindReferences(jobs)
  return {name, description, file, jobs, ...(endpoints ? {endpoints} : {})}
}

/** `endpoints: [host:port, dns:///name:port]` (or one string, comma-separated), checked now. */
function readEndpoints(top: Fields): string[] | undefined {
  if (!top.has('endpoints')) return undefined
  const list = top.stringList('endpoints')
  for (const item of list) {
    try {
      parseEndpoints([item.value])
    } catch (error) {
      throw top.errorAt(item, (error as Error).message)
    }
  }

  return list.map((item) => item.value)
}

/**
 * `extends: base.yaml`: this file only names the sweep and sets variables; the jobs (and their
 * defaults) are the base file's, with this file's vars over the base's. Errors in the jobs say
 * the base file's line. The sweep keeps this file as its file, the bases in `extends`.
 */
function extendSweep(top: Fields, file: string, options: SweepOptions & {extendedBy: NonNullable<SweepOptions['extendedBy']>}): Sweep {
  top.onlyKeys(EXTENDING_KEYS, 'a sweep that extends another (its jobs come from there)')
  const ref = top.string('extends')
  if (options.extendedBy.depth >= MAX_EXTENDS_DEPTH) throw top.errorAt(ref, `more than ${MAX_EXTENDS_DEPTH} levels of extends (a cycle?)`)
  const basePath = resolve(dirname(file), ref.value)
  let text: string
  try {
    text = readFileSync(basePath, 'utf8')
  } catch (error) {
    throw top.errorAt(ref, `cannot read ${basePath}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`)
  }

  const base = parseSweep(text, basePath, {...options, extendedBy: {...options.extendedBy, depth: options.extendedBy.depth + 1}})
  return {...base, file: options.extendedBy.depth === 0 ? file : base.file, extends: [basePath, ...(base.extends ?? [])]}
}

type CellParams = {dataset?: {name?: string}; method?: string; eps?: number; template?: string} | undefined

/**
 * Jobs of the entry named `entry` (exactly: `sahara` does not match `sahara-centred`) on the same
 * model and dataset; when several remain (a matrix over methods, eps or templates), those that
 * also share this job's method, then eps, then template.
 */
function entryMatches(jobs: JobSpec[], job: JobSpec, entry: string): number[] {
  const mine = job.params as CellParams
  let matches = jobs.flatMap((j, i) => {
    const theirs = j.params as CellParams
    return j.entry === entry && j.model.source === job.model.source && theirs?.dataset?.name === mine?.dataset?.name ? [i] : []
  })
  for (const key of ['method', 'eps', 'template'] as const) {
    const narrower = matches.filter((i) => (jobs[i].params as CellParams)?.[key] === mine?.[key])
    if (matches.length > 1 && narrower.length > 0) matches = narrower
  }

  return matches
}

/**
 * Check every job's references to other jobs before any work, and bind each to one job: the
 * job of that full name, or else the one matching job of the entry of that name.
 */
function bindReferences(jobs: JobSpec[]): void {
  for (const [index, job] of jobs.entries()) {
    for (const ref of job.needs ?? []) {
      const exact = jobs.findIndex((j) => j.name === ref.job)
      const matches = exact >= 0 ? [exact] : entryMatches(jobs, job, ref.job)
      if (matches.length === 0) {
        const entries = [...new Set(jobs.filter((j) => ref.kinds.includes(j.kind)).map((j) => j.entry))]
        throw ref.error(
          `no ${ref.kinds.join(' or ')} job or job entry named ${ref.job} on the same model and dataset in this sweep` +
            `${entries.length ? `; entries: ${entries.join(', ')}` : ''}`,
        )
      }

      if (matches.length > 1) throw ref.error(`${ref.job} matches several jobs (${matches.map((i) => jobs[i].name).join(', ')}); give the full job name`)
      const target = jobs[matches[0]]
      if (!ref.kinds.includes(target.kind)) throw ref.error(`job ${target.name} is of kind ${target.kind}; expected ${ref.kinds.join(' or ')}`)
      if (matches[0] > index) throw ref.error(`job ${target.name} comes after this job in the sweep; list it first`)
      if (target.model.source !== job.model.source) {
        throw ref.error(`job ${target.name} runs model ${target.model.name}, this job ${job.model.name}: heads carry over only within one model`)
      }

      ref.bind(target)
    }
  }
}
