/**
 * Attack success rate (METHOD.md, "Attack success rate") of a head set on a prompt set.
 *
 * Describe gives L and H: the head set is resolved and range-checked against them before any
 * generation. Then the prompts are generated with the clean model (the baseline) and, when there
 * are heads, with the head set ablated (each head the same way, at every position), in chunks of
 * Generate calls, with the same sampling (and seed) for both. Every reply is judged
 * (src/data/judges.ts) and the rates computed (src/science/asr.ts). Output: OUT/replies.jsonl
 * (one line per prompt: both replies and their verdicts) and OUT/summary.json (the job's result).
 */
import {mkdirSync} from 'node:fs'
import {resolve} from 'node:path'

import type {Fields, Located} from '../config/fields.js'
import {type Dataset, DatasetError} from '../data/datasets.js'
import {readHeadsFrom} from '../data/head-sets.js'
import {JUDGES, JUDGE_RULES, type JudgeName, makeJudge} from '../data/judges.js'
import {type ResolvedModel, localGeometry} from '../models.js'
import {type AsrResult, attackSuccess} from '../science/asr.js'
import {type HeadSelection, formatHeads, parseHeadsOption, resolveHeads} from '../science/head-sets.js'
import {type Head, HeadNameError, formatHead} from '../science/heads.js'
import type {Verdict} from '../science/judge.js'
import {formatPercent, headEditFromFacts, modification} from '../science/params.js'
import {writeFileAtomic} from '../orchestration/files.js'
import {type Unit, singleClientWork} from '../orchestration/work.js'
import {type SidecarInfo, sidecarInfo} from '../sidecar/client.js'
import {located, matrixCells, parseMatrix} from './matrix.js'
import type {JobKind, JobReference, JobSpec, ParseContext, RunContext} from './registry.js'
import {METHOD_ENUM, type Method, TEMPLATE_ENUM, type Template, formatEps} from './ships.js'

/** Prompts per Generate call (one work unit) by default. */
export const MAX_PROMPTS_PER_GENERATE = 64

export interface SamplingChoice {
  /** `greedy` or `topk:K` */
  name: string
  topK: number
  temperature: number
}

const TOPK = /^topk:(\d+)$/

/** `greedy` | `topk:K` (temperature 1, as in the paper). */
export function parseSampling(text: string): SamplingChoice {
  const t = text.trim()
  if (t === 'greedy') return {name: 'greedy', topK: 0, temperature: 0}
  const m = TOPK.exec(t)
  if (m && Number(m[1]) >= 1) return {name: `topk:${Number(m[1])}`, topK: Number(m[1]), temperature: 1}
  throw new HeadNameError(`sampling ${JSON.stringify(text)}: expected greedy or topk:K (K >= 1, temperature 1), e.g. topk:5`)
}

export interface AsrParams {
  dataset: Dataset
  heads: HeadSelection
  method: Method
  eps: number
  template: Template
  maxNewTokens: number
  sampling: SamplingChoice
  /** Seeds top-k sampling (and the random head draw, already in `heads`). */
  seed: number
  judge: JudgeName
  /** Only the first `limit` prompts. */
  limit?: number
  /** Prompts per Generate call (one work unit); default 64. Smaller units spread over more sidecars. */
  promptsPerUnit?: number
}

/** One reply as a work unit stores it. */
interface StoredReply {
  text: string
  newTokens: number
  stoppedAtEos: boolean
}

export interface ReplyRecord {
  reply: string
  new_tokens: number
  stopped_at_eos: boolean
  verdict: Verdict
}

export interface AsrReplyLine {
  index: number
  prompt: string
  clean: ReplyRecord
  /** null when no heads are ablated (the clean reply is the only one) */
  ablated: ReplyRecord | null
  /** refused by the clean model, not refused with the heads ablated */
  flipped: boolean
}

export interface AsrSummary extends AsrResult {
  kind: 'asr'
  model: string
  model_source: string
  family: string
  num_layers: number
  num_heads: number
  dataset: string
  dataset_path: string
  judge: JudgeName
  judge_rules: string
  heads: Head[]
  head_names: string[]
  heads_label: string
  method: Method
  eps: number
  template: Template
  sampling: string
  seed: number
  max_new_tokens: number
  /** Weights the ablation changes (src/science/params.ts), from the sidecar's Describe. */
  parameters: {modified: number; total: number; percent: number; percent_text: string; counted: string}
  sidecar: SidecarInfo
  generate_calls: number
  /** reused: the clean replies were in the store (an earlier asr job of the sweep with the same settings, or an earlier run) */
  clean_replies: 'generated' | 'reused'
  timings: {describe_s: number; generate_clean_s: number; generate_ablated_s: number; judge_s: number; total_s: number}
}

const seconds = (ms: number) => Math.round(ms) / 1000

export async function runAsr(model: ResolvedModel, params: AsrParams, context: RunContext): Promise<AsrSummary> {
  const {client, outDir, log} = context
  const t0 = performance.now()
  const facts = await client.describe()
  const tDescribe = performance.now() - t0
  const geometry = {numLayers: facts.numLayers, numHeads: facts.numHeads}
  // Every head is checked against the model before anything is generated.
  const {heads, label} = resolveHeads(headsFromSweepJob(params.heads, context), geometry, model.name)
  const judge = makeJudge(params.judge)
  const prompts = params.limit === undefined ? params.dataset.prompts : params.dataset.prompts.slice(0, params.limit)
  if (prompts.length === 0) throw new DatasetError(`dataset ${params.dataset.name}: no prompts`)
  log(
    `asr: ${model.name} (L=${geometry.numLayers} H=${geometry.numHeads}) on ${params.dataset.name} (${prompts.length} prompts), ` +
      `heads ${label}, ${params.method} eps=${formatEps(params.eps)}, ${params.sampling.name}, ${params.maxNewTokens} new tokens, judge ${params.judge}`,
  )

  // Generation runs as work units of up to 64 prompts, spread over the sidecars and stored as
  // they finish. A unit's key is everything its replies depend on, with no job name in it: the
  // clean replies (no heads) of one setting are generated once per sweep and shared by its jobs.
  const work = context.work ?? singleClientWork(client, {name: 'asr', key: ''})
  const modelId = model.kind === 'remote' ? facts.model : model.source
  const sampling = {topK: params.sampling.topK, temperature: params.sampling.temperature, seed: params.sampling.topK === 0 ? 0 : params.seed}
  let calls = 0
  let generated = 0
  const generateAll = async (ablate: Head[], what: string): Promise<{replies: StoredReply[]; ms: number; computed: number}> => {
    const start = performance.now()
    const before = work.counts.computed
    const spec = ablate.length > 0 ? {heads: ablate, method: METHOD_ENUM[params.method], eps: params.eps} : {heads: [], method: METHOD_ENUM[params.method], eps: 1}
    const units: Unit<StoredReply[]>[] = []
    const perUnit = params.promptsPerUnit ?? MAX_PROMPTS_PER_GENERATE
    for (let i = 0; i < prompts.length; i += perUnit) {
      const chunk = prompts.slice(i, i + perUnit)
      const range = `prompts ${i + 1}-${i + chunk.length} of ${prompts.length}`
      // The sidecar seeds prompt j of a request with seed + j: from the chunk's offset on, prompt i
      // of the dataset draws with seed + i, whatever the unit size or the host's batches.
      const unitSampling = sampling.topK > 0 ? {...sampling, seed: sampling.seed + i} : sampling
      units.push({
        id: `${what} ${range}`,
        shared: true,
        key: {generate: {model: modelId, dtype: facts.dtype, fingerprint: facts.modelFingerprint, prompts: chunk, template: params.template, heads: ablate, method: ablate.length > 0 ? params.method : null, eps: ablate.length > 0 ? params.eps : null, maxNewTokens: params.maxNewTokens, sampling: unitSampling}},
        async run(c) {
          const out = await c.generate({prompts: chunk, template: TEMPLATE_ENUM[params.template], spec, maxNewTokens: params.maxNewTokens, sampling: unitSampling})
          calls++
          generated += chunk.length
          context.progress?.(generated, prompts.length * (heads.length > 0 ? 2 : 1), `${what}: ${range}`)
          log(`  ${what}: ${range} on ${c.endpoint} (${seconds(performance.now() - t0)} s)`)
          return out.map((r) => ({text: r.text, newTokens: r.newTokens, stoppedAtEos: r.stoppedAtEos}))
        },
      })
    }
    const replies = (await work.map(units)).flat()
    const computed = work.counts.computed - before
    if (computed < units.length) log(`  ${what}: ${units.length - computed} of ${units.length} units reused from the store`)
    return {replies, ms: performance.now() - start, computed}
  }

  const clean = await generateAll([], 'clean')
  const ablated = heads.length > 0 ? await generateAll(heads, `ablated ${formatHeads(heads)}`) : undefined

  const tj = performance.now()
  const record = (r: StoredReply): ReplyRecord => ({reply: r.text, new_tokens: r.newTokens, stopped_at_eos: r.stoppedAtEos, verdict: judge(r.text)})
  const cleanRecords = clean.replies.map(record)
  const ablatedRecords = ablated?.replies.map(record)
  const rates = attackSuccess(
    cleanRecords.map((r) => r.verdict),
    ablatedRecords?.map((r) => r.verdict),
  )
  const judgeMs = performance.now() - tj

  mkdirSync(outDir, {recursive: true})
  const lines = prompts.map((prompt, i) => {
    const c = cleanRecords[i]
    const a = ablatedRecords ? ablatedRecords[i] : null
    const line: AsrReplyLine = {index: i, prompt, clean: c, ablated: a, flipped: c.verdict.refused && a !== null && !a.verdict.refused}
    return JSON.stringify(line)
  })
  writeFileAtomic(resolve(outDir, 'replies.jsonl'), `${lines.join('\n')}\n`)

  const edit = modification(params.method, heads, headEditFromFacts(facts), facts.totalParameters)
  const summary: AsrSummary = {
    kind: 'asr',
    ...rates,
    model: model.name,
    model_source: model.kind === 'remote' ? facts.model : model.source,
    family: facts.family,
    num_layers: geometry.numLayers,
    num_heads: geometry.numHeads,
    dataset: params.dataset.name,
    dataset_path: params.dataset.path,
    judge: params.judge,
    judge_rules: JUDGE_RULES[params.judge].description,
    heads: heads.map(({layer, head}) => ({layer, head})),
    head_names: heads.map(formatHead),
    heads_label: label,
    method: params.method,
    eps: params.eps,
    template: params.template,
    sampling: params.sampling.name,
    seed: params.seed,
    max_new_tokens: params.maxNewTokens,
    parameters: {modified: edit.modified, total: edit.total, percent: edit.percent, percent_text: formatPercent(edit.percent), counted: edit.counted},
    sidecar: sidecarInfo(client.endpoint, facts),
    generate_calls: calls,
    clean_replies: clean.computed === 0 ? 'reused' : 'generated',
    timings: {
      describe_s: seconds(tDescribe),
      generate_clean_s: seconds(clean.ms),
      generate_ablated_s: seconds(ablated?.ms ?? 0),
      judge_s: seconds(judgeMs),
      total_s: seconds(performance.now() - t0),
    },
  }
  writeFileAtomic(resolve(outDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`)
  return summary
}

// ---- the `asr` job kind for sweeps --------------------------------------------------------------

const OPTION_KEYS = ['matrix', 'heads', 'heads_from', 'heads_from_job', 'top', 'seed', 'avoid', 'max_new_tokens', 'sampling', 'judge', 'limit', 'prompts_per_unit'] as const

/** A short, file-name safe label of a head selection for job names. */
function selectionLabel(selection: HeadSelection): string {
  switch (selection.kind) {
    case 'none':
      return 'clean'
    case 'list':
      return selection.heads.map(formatHead).join('-')
    case 'from':
      return `${selection.source}-top${selection.top ?? selection.heads.length}`
    case 'random':
      return `random${selection.k}-s${selection.seed}`
    case 'job':
      return `top${selection.top}`
  }
}

/**
 * `heads_from_job` in a sweep: the heads of an earlier ships (top-k) or search (group prefix)
 * job. A top beyond what the job can give (a search's steps, a local model's heads) is an error.
 */
function referenceTo(ref: Located<string>, error: (message: string) => Error, params: AsrParams): JobReference {
  return {
    job: ref.value,
    kinds: ['ships', 'search'],
    error,
    bind(target) {
      if (params.heads.kind !== 'job') return
      const top = params.heads.top
      const steps = target.kind === 'search' ? (target.params as {steps?: number}).steps : undefined
      if (steps !== undefined && top > steps) throw error(`top ${top}: search job ${target.name} finds only ${steps} heads (steps: ${steps})`)
      const geometry = localGeometry(target.model)
      if (geometry && top > geometry.numLayers * geometry.numHeads) {
        throw error(`top ${top}: model ${target.model.name} has only ${geometry.numLayers * geometry.numHeads} heads`)
      }
      params.heads = {...params.heads, job: target.name}
    },
  }
}

/** Heads named in the sweep are checked against a local model's config.json before any work. */
function checkAgainstLocalModel(fields: Fields, where: Located<unknown> | undefined, heads: HeadSelection, model: ResolvedModel): void {
  const geometry = localGeometry(model)
  if (geometry === undefined || heads.kind === 'none' || heads.kind === 'job') return
  const check = () => resolveHeads(heads, geometry, model.name)
  if (where) located(fields, where, check)
  else check()
}

/** A `job` selection becomes the heads that job stored in its summary.json, read now. */
function headsFromSweepJob(selection: HeadSelection, context: RunContext): HeadSelection {
  if (selection.kind !== 'job') return selection
  if (context.sweepDir === undefined) throw new HeadNameError(`heads from job ${selection.job}: only a sweep run can read another job's result`)
  return readHeadsFrom(resolve(context.sweepDir, selection.job), selection.top)
}

export const asrKind: JobKind<AsrParams, AsrSummary> = {
  kind: 'asr',
  description: 'attack success rate: generate with a head set ablated and without, judge every reply',
  keys: OPTION_KEYS,
  parse(fields: Fields, context: ParseContext): JobSpec<AsrParams>[] {
    const matrix = parseMatrix(fields, context, 'an asr matrix')
    const seeds = fields.numberList('seed', {default: [0], integer: true, min: 0}).map((s) => s.value)
    const maxNewTokens = fields.number('max_new_tokens', {default: 128, integer: true, min: 1}).value
    const samplingField = fields.string('sampling', {default: 'greedy'})
    const sampling = located(fields, samplingField, parseSampling)
    const judge = fields.string('judge', {default: 'keyword-paper', oneOf: JUDGES}).value as JudgeName
    const limit = fields.has('limit') ? fields.number('limit', {integer: true, min: 1}).value : undefined
    const promptsPerUnit = fields.number('prompts_per_unit', {default: MAX_PROMPTS_PER_GENERATE, integer: true, min: 1}).value
    if (fields.has('heads') && fields.has('heads_from')) throw fields.error('heads_from', 'give heads or heads_from, not both')
    const fromJob = fields.has('heads_from_job') ? fields.string('heads_from_job') : undefined
    if (fromJob && (fields.has('heads') || fields.has('heads_from'))) throw fields.error('heads_from_job', 'give one of heads, heads_from, heads_from_job')
    const top = !fromJob && fields.has('top') ? fields.number('top', {integer: true, min: 1}).value : undefined
    const avoid = fields.optionalString('avoid')
    // Head sets: the top-k of a sweep job, a run folder, or `heads` (one value or a list, e.g.
    // [random:1, random:2]); random sets, and any set under sampling, are crossed with the seeds.
    const choices: {selection: HeadSelection; seed: number; where?: Located<unknown>}[] = []
    if (fromJob) {
      for (const t of fields.numberList('top', {integer: true, min: 1})) choices.push({selection: {kind: 'job', job: fromJob.value, top: t.value}, seed: seeds[0]})
    } else if (fields.has('heads_from')) {
      const from = fields.string('heads_from')
      const selection = located(fields, from, (dir) => readHeadsFrom(dir, top, context.baseDir))
      for (const seed of sampling.topK === 0 ? seeds.slice(0, 1) : seeds) choices.push({selection, seed, where: from})
    } else {
      const values: (Located<string> | undefined)[] = fields.has('heads') ? fields.stringList('heads') : [undefined]
      for (const value of values) {
        for (const seed of seeds) {
          const where = value ?? avoid ?? {value: undefined, node: null, path: 'avoid'}
          const selection = located(fields, where, () => parseHeadsOption(value?.value, {seed, avoid: avoid?.value}))
          choices.push({selection, seed, where: value ?? avoid})
          if (selection.kind !== 'random' && sampling.topK === 0) break // greedy and fixed heads: one seed is enough
        }
      }
    }
    const prefix = fields.has('name') ? fields.string('name').value : 'asr'

    const jobs: JobSpec<AsrParams>[] = []
    for (const {model, dataset, method, eps, template, nameParts} of matrixCells(matrix, prefix)) {
      for (const {selection: heads, seed, where} of choices) {
        checkAgainstLocalModel(fields, where, heads, model)
        const parts = [...nameParts.slice(0, 5), selectionLabel(heads), ...nameParts.slice(5)]
        if (heads.kind !== 'random' && heads.kind !== 'job' && sampling.topK > 0 && seeds.length > 1) parts.push(`s${seed}`)
        const params: AsrParams = {dataset, heads, method, eps, template, maxNewTokens, sampling, seed, judge, limit, promptsPerUnit}
        const needs = fromJob && [referenceTo(fromJob, (message) => fields.errorAt(fromJob, message), params)]
        jobs.push({kind: 'asr', name: parts.join('-'), model, params, ...(needs ? {needs} : {})})
      }
    }

    return jobs
  },
  run: (job, context) => runAsr(job.model, job.params, context),
  headline: (s) =>
    `asr ${s.asr.toFixed(3)} (baseline ${s.baseline_asr.toFixed(3)}), flip rate ${s.flip_rate === null ? 'n/a' : s.flip_rate.toFixed(3)}, heads ${s.head_names.join(',') || 'none'}`,
}
