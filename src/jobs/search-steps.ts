/**
 * The Sahara search's stored steps (OUT/search.jsonl, one line per finished step, written by
 * src/jobs/search.ts): the settings a stored step must share with a run to be resumed, reading
 * the file back (a torn last line dropped, anything else wrong refused), and choosing a step's
 * head from its score table.
 */
import {createHash} from 'node:crypto'
import {existsSync, readFileSync, renameSync, truncateSync, writeFileSync} from 'node:fs'
import {resolve} from 'node:path'

import type {Head} from '../science/heads.js'
import {descending} from '../science/ships.js'
import type {AngleSum} from '../science/subspace.js'
import {type PrefilterSummary, decodeFloat, formatPrefilter} from './engine.js'
import type {SearchParams} from './search.js'
import type {CleanRepresentationFacts, ScoreKind} from './search-scoring.js'
import type {Method, Template} from './ships.js'

/** What stored steps must agree on to be resumed. Irrelevant options are null. */
export interface SearchSettings {
  model: string
  dataset: string
  dataset_sha256: string
  n_queries: number
  method: Method
  eps: number
  template: Template
  score: ScoreKind
  r_main: number | null
  centre: boolean | null
  angle_sum: AngleSum | null
  smoothing: number | null
  /** Score kl over a support set: K; null for every token (and in steps stored before it existed). */
  logprob_support: number | null
  /** "atp:K" or null (steps stored before pre-filters existed read as null). */
  prefilter: string | null
  /** The loaded model's dtype and fingerprint (weights, config, tokenizer), from Describe; undefined
   * (not compared) where no sidecar has been asked yet (precheckStoredSteps). */
  dtype?: string
  model_fingerprint?: string
}

/** What a run chose that its summary reports as its stored steps do (the score's options included). */
export type SearchChoices = Pick<SearchSettings, 'dataset' | 'n_queries' | 'method' | 'eps' | 'template' | 'score' | 'r_main' | 'centre' | 'angle_sum' | 'smoothing' | 'logprob_support'>

/** A head's score in a stored step; a score that is not finite (an infinite KL with smoothing 0) is
 * stored as its string, "Infinity" (JSON has none), and null in lines written before that rule. */
export interface ScoreEntry {
  layer: number
  head: number
  score_deg?: number | string | null
  mean_kl?: number | string | null
}

export interface StepLine {
  step: number
  group_before: Head[]
  scores: ScoreEntry[]
  chosen: Head
  settings: SearchSettings
  requests: number
  seconds: number
  finished_at: string
  /** What the run that computed this step worked out once before its steps, kept so that a run
   * reading every step back still reports it (absent in lines from before, or without either). */
  prefilter?: PrefilterSummary
  clean_representation?: CleanRepresentationFacts
}

export interface StepResult {
  step: number
  head: Head
  /** The value maximised: score_deg (angles) or mean_kl (kl). */
  score: number
  score_deg?: number
  mean_kl?: number
  runner_up: (Head & {score: number}) | null
}

export class SearchStateError extends Error {
  override name = 'SearchStateError'
}

/** Stored steps were made with other settings; `detail` names the first differing field. */
export class SearchSettingsChanged extends SearchStateError {
  override name = 'SearchSettingsChanged'

  constructor(readonly detail: string) {
    super(`${detail}: use another --out, or --restart to discard the stored steps`)
  }
}

export function datasetDigest(prompts: readonly string[]): string {
  return createHash('sha256').update(JSON.stringify(prompts)).digest('hex')
}

export function searchSettings(
  modelSource: string,
  params: SearchParams,
  prompts: readonly string[],
  loaded?: {dtype: string; fingerprint: string},
): SearchSettings {
  const angles = params.score === 'angles'
  return {
    ...(loaded ? {dtype: loaded.dtype, model_fingerprint: loaded.fingerprint} : {}),
    model: modelSource,
    dataset: params.dataset.name,
    dataset_sha256: datasetDigest(prompts),
    n_queries: prompts.length,
    method: params.method,
    eps: params.eps,
    template: params.template,
    score: params.score,
    r_main: angles ? params.rMain : null,
    centre: angles ? params.centre : null,
    angle_sum: angles ? params.angleSum : null,
    smoothing: angles ? null : params.smoothing,
    logprob_support: !angles && (params.logprobSupport ?? 0) > 0 ? (params.logprobSupport as number) : null,
    prefilter: params.prefilter ? formatPrefilter(params.prefilter) : null,
  }
}

export function promptsOf(params: SearchParams): string[] {
  return params.limit === undefined ? params.dataset.prompts : params.dataset.prompts.slice(0, params.limit)
}

export const sameHead = (a: Head, b: Head) => a.layer === b.layer && a.head === b.head

/**
 * Read OUT/search.jsonl: the valid steps, in order. Checks every line's settings against
 * `settings` (first differing field named), step numbering, and that each group_before is the
 * previous steps' choices. A torn last line is dropped (file truncated to the good prefix) with a
 * warning. With `restart` the file is emptied instead.
 */
export function loadStoredSteps(path: string, settings: SearchSettings, options: {restart?: boolean; log?: (m: string) => void} = {}): StepLine[] {
  const log = options.log ?? (() => {})
  if (!existsSync(path)) return []
  if (options.restart) {
    writeFileSync(path, '')
    return []
  }

  const text = readFileSync(path, 'utf8')
  if (text === '') return []
  const parts = text.split('\n')
  const trailing = parts.pop() as string // '' when the file ends with a newline
  const steps: StepLine[] = []
  let goodBytes = 0
  let torn: string | undefined = trailing === '' ? undefined : `an unterminated last line (${trailing.length} characters)`
  for (const [i, raw] of parts.entries()) {
    let line: StepLine
    try {
      line = JSON.parse(raw) as StepLine
      if (typeof line !== 'object' || line === null || !Array.isArray(line.scores) || !Array.isArray(line.group_before) || !line.chosen || !line.settings) throw new Error('not a step record')
    } catch (error) {
      if (i === parts.length - 1 && trailing === '') {
        torn = `an unreadable last line (${(error as Error).message})`
        break
      }

      throw new SearchStateError(`${path}: line ${i + 1} is not a valid step record (${(error as Error).message}); fix or remove the file, or use --restart`)
    }

    for (const key of Object.keys(settings) as (keyof SearchSettings)[]) {
      if (settings[key] !== undefined && (line.settings[key] ?? null) !== settings[key]) {
        const stored = line.settings[key] === undefined ? `no ${key} (stored by an earlier version)` : `${key} = ${JSON.stringify(line.settings[key])}`
        throw new SearchSettingsChanged(`${path} holds steps made with ${stored}, but this run has ${key} = ${JSON.stringify(settings[key])}`)
      }
    }

    if (line.step !== i + 1) throw new SearchStateError(`${path}: line ${i + 1} is step ${line.step}, expected step ${i + 1}; use --restart`)
    const expected = steps.map((s) => s.chosen)
    if (line.group_before.length !== expected.length || !line.group_before.every((h, k) => sameHead(h, expected[k]))) {
      throw new SearchStateError(`${path}: step ${line.step}'s group_before does not match the heads chosen before it; use --restart`)
    }

    steps.push(line)
    goodBytes += Buffer.byteLength(raw, 'utf8') + 1
  }

  if (torn !== undefined) {
    log(`warning: ${path}: ignoring ${torn} (a step interrupted while being written); it will be recomputed`)
    truncateSync(path, goodBytes)
  }

  return steps
}

/** argmax; ties (exactly equal scores) go to the lowest (layer, head). NaN never wins. */
export function chooseHead(entries: {head: Head; score: number}[]): {best: {head: Head; score: number}; runnerUp: {head: Head; score: number} | null} {
  const sorted = [...entries].sort((a, b) => descending(a.score, b.score) || a.head.layer - b.head.layer || a.head.head - b.head.head)
  if (sorted.length === 0) throw new Error('chooseHead: no candidates')
  return {best: sorted[0], runnerUp: sorted[1] ?? null}
}

export function scoreOf(entry: ScoreEntry, kind: ScoreKind): number {
  return decodeFloat(kind === 'angles' ? entry.score_deg : entry.mean_kl)
}

/** The step's chosen head with its own score, and the best of the others. */
export function stepResult(line: StepLine, kind: ScoreKind): StepResult {
  const entries = line.scores.map((e) => ({head: {layer: e.layer, head: e.head}, score: scoreOf(e, kind)}))
  const score = entries.find((e) => sameHead(e.head, line.chosen))?.score ?? Number.NaN
  const others = entries.filter((e) => !sameHead(e.head, line.chosen))
  const runnerUp = others.length > 0 ? chooseHead(others).best : null
  return {
    step: line.step,
    head: {layer: line.chosen.layer, head: line.chosen.head},
    score,
    ...(kind === 'angles' ? {score_deg: score} : {mean_kl: score}),
    runner_up: runnerUp ? {...runnerUp.head, score: runnerUp.score} : null,
  }
}

/** The stored steps to resume from; with settingsChanged 'set-aside', steps of other settings are
 * kept in a file beside it (never deleted) and the search starts anew. */
export function storedSteps(path: string, settings: SearchSettings, params: SearchParams, log: (m: string) => void): StepLine[] {
  try {
    return loadStoredSteps(path, settings, {restart: params.restart, log})
  } catch (error) {
    if (!(error instanceof SearchSettingsChanged) || params.settingsChanged !== 'set-aside') throw error
    const aside = `${path}.superseded-${new Date().toISOString().replaceAll(':', '-')}`
    renameSync(path, aside)
    log(`  ${error.detail}; those steps are kept in ${aside}, and the search starts anew`)
    return []
  }
}

/** For callers without a sidecar yet (the command): refuse stored steps with other settings before starting one. */
export function precheckStoredSteps(outDir: string, modelSource: string, params: SearchParams, log: (m: string) => void): void {
  const path = resolve(outDir, 'search.jsonl')
  if (params.restart || !existsSync(path)) return
  loadStoredSteps(path, searchSettings(modelSource, params, promptsOf(params)), {log})
}
