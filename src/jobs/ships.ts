/**
 * Query-level Ships (METHOD.md, paper Eq. 9) for every head and every query of a dataset.
 *
 * Describe gives L and H. Prompts go to the sidecar in chunks; each Forward asks, for every
 * prompt of the chunk, for the clean model plus one single-head ablation per head (all L×H,
 * or a group of heads when the vocabulary is too large for one request), log-probs only. KL
 * per (query, head) is computed here (src/science/kl.ts), then per-query top-k and the dataset
 * ranking (src/science/ships.ts). Output: OUT/ships.jsonl (one line per query) and
 * OUT/summary.json (also the job's result).
 */
import {appendFileSync, mkdirSync, writeFileSync} from 'node:fs'
import {resolve} from 'node:path'

import type {Fields} from '../config/fields.js'
import type {Dataset} from '../data/datasets.js'
import type {ResolvedModel} from '../models.js'
import {type Head, allHeads, formatHead} from '../science/heads.js'
import {DEFAULT_SMOOTHING, klAgainstClean} from '../science/kl.js'
import {type HeadKl, type RankedHead, rankHeads, topKHeads} from '../science/ships.js'
import {AblationMethod, type AblationSpec, PromptTemplate, type SidecarInfo, sidecarInfo} from '../sidecar/client.js'
import {located, matrixCells, parseMatrix} from './matrix.js'
import type {JobKind, JobSpec, ParseContext, RunContext} from './registry.js'

export const METHODS = ['ua', 'sc', 'mean'] as const
export type Method = (typeof METHODS)[number]
export const TEMPLATES = ['paper', 'direct', 'chat'] as const
export type Template = (typeof TEMPLATES)[number]

export const METHOD_ENUM: Record<Method, AblationMethod> = {
  ua: AblationMethod.ABLATION_METHOD_UA,
  sc: AblationMethod.ABLATION_METHOD_SC,
  mean: AblationMethod.ABLATION_METHOD_MEAN,
}
export const TEMPLATE_ENUM: Record<Template, PromptTemplate> = {
  paper: PromptTemplate.PROMPT_TEMPLATE_PAPER,
  direct: PromptTemplate.PROMPT_TEMPLATE_DIRECT,
  chat: PromptTemplate.PROMPT_TEMPLATE_CHAT,
}

/** Floats of log-probs per Forward request: 2^27 float32 = 512 MiB, keeps one request bounded. */
export const MAX_FLOATS_PER_REQUEST = 2 ** 27
/** Prompts per request at most, so progress is reported (and partial results written) as it goes. */
export const MAX_PROMPTS_PER_REQUEST = 32

export interface ShipsParams {
  dataset: Dataset
  method: Method
  eps: number
  template: Template
  topK: number
  smoothing: number
  /** Only the first `limit` prompts. */
  limit?: number
  maxFloatsPerRequest?: number
}

export interface ShipsQueryLine {
  index: number
  prompt: string
  prompt_tokens: number
  top: {head: string; layer: number; head_index: number; kl: number}[]
}

export interface ShipsSummary {
  kind: 'ships'
  model: string
  model_source: string
  family: string
  num_layers: number
  num_heads: number
  vocab_size: number
  dataset: string
  dataset_path: string
  method: Method
  eps: number
  template: Template
  top_k: number
  smoothing: number
  n_queries: number
  sidecar: SidecarInfo
  requests: number
  timings: {describe_s: number; forward_s: number; kl_s: number; total_s: number}
  /** All L×H heads, ranked by mean KL over the queries (largest first). */
  heads: RankedHead[]
}

export interface Plan {
  promptsPerRequest: number
  headGroups: Head[][]
}

/**
 * How to split the scan into bounded requests: each request carries the clean spec plus a group
 * of heads for a chunk of prompts, with prompts × (1 + heads) × vocab <= maxFloats.
 */
export function planRequests(
  heads: Head[],
  vocab: number,
  maxFloats: number = MAX_FLOATS_PER_REQUEST,
  maxPrompts: number = MAX_PROMPTS_PER_REQUEST,
): Plan {
  const rowsBudget = Math.max(2, Math.floor(maxFloats / vocab))
  const groupSize = Math.max(1, Math.min(heads.length, rowsBudget - 1))
  const headGroups: Head[][] = []
  for (let i = 0; i < heads.length; i += groupSize) headGroups.push(heads.slice(i, i + groupSize))
  const promptsPerRequest = Math.max(1, Math.min(maxPrompts, Math.floor(rowsBudget / (1 + groupSize))))
  return {promptsPerRequest, headGroups}
}

const seconds = (ms: number) => Math.round(ms) / 1000

export async function runShips(
  model: ResolvedModel,
  params: ShipsParams,
  context: RunContext,
): Promise<ShipsSummary> {
  const {client, outDir, log} = context
  const t0 = performance.now()
  const facts = await client.describe()
  const tDescribe = performance.now() - t0
  const geometry = {numLayers: facts.numLayers, numHeads: facts.numHeads}
  if (geometry.numLayers === 0 || geometry.numHeads === 0 || facts.vocabSize === 0) {
    throw new Error(`Describe on ${client.endpoint} reported L=${facts.numLayers}, H=${facts.numHeads}, vocab=${facts.vocabSize}: nothing to scan`)
  }

  const prompts = params.limit === undefined ? params.dataset.prompts : params.dataset.prompts.slice(0, params.limit)
  const heads = allHeads(geometry)
  const plan = planRequests(heads, facts.vocabSize, params.maxFloatsPerRequest)
  const nChunks = Math.ceil(prompts.length / plan.promptsPerRequest)
  log(
    `ships: ${model.name} (${facts.family}, L=${geometry.numLayers} H=${geometry.numHeads} vocab=${facts.vocabSize}) on ${params.dataset.name} ` +
      `(${prompts.length} prompts), ${params.method} eps=${formatEps(params.eps)}, ${nChunks * plan.headGroups.length} requests`,
  )

  mkdirSync(outDir, {recursive: true})
  const jsonlPath = resolve(outDir, 'ships.jsonl')
  writeFileSync(jsonlPath, '')
  const perQuery: Float64Array[] = []
  let forwardMs = 0
  let klMs = 0
  let requests = 0
  const options = {smoothing: params.smoothing}

  for (let start = 0; start < prompts.length; start += plan.promptsPerRequest) {
    const chunk = prompts.slice(start, start + plan.promptsPerRequest)
    const kl = chunk.map(() => new Float64Array(heads.length))
    const promptTokens: number[] = []
    let headOffset = 0
    for (const group of plan.headGroups) {
      const specs: AblationSpec[] = [
        {heads: [], method: METHOD_ENUM[params.method], eps: params.eps},
        ...group.map((h) => ({heads: [h], method: METHOD_ENUM[params.method], eps: params.eps})),
      ]
      const tf = performance.now()
      const result = await client.forward({
        prompts: chunk,
        template: TEMPLATE_ENUM[params.template],
        specs,
        returnLogprobs: true,
      })
      forwardMs += performance.now() - tf
      requests++
      const logprobs = result.tensors.get('logprobs')
      const expected = [chunk.length, specs.length, facts.vocabSize]
      if (!logprobs || logprobs.shape.join(',') !== expected.join(',')) {
        throw new Error(
          `Forward on ${client.endpoint}: expected tensor logprobs of shape [${expected.join(', ')}], got ${logprobs ? `[${logprobs.shape.join(', ')}]` : 'none'}`,
        )
      }

      if (promptTokens.length === 0) promptTokens.push(...result.promptTokens)
      const tk = performance.now()
      const rowFloats = specs.length * facts.vocabSize
      for (let q = 0; q < chunk.length; q++) {
        const block = logprobs.data.subarray(q * rowFloats, (q + 1) * rowFloats) as Float32Array
        kl[q].set(klAgainstClean(block, specs.length, facts.vocabSize, options), headOffset)
      }

      klMs += performance.now() - tk
      headOffset += group.length
    }

    const lines = chunk.map((prompt, q) => {
      const line: ShipsQueryLine = {
        index: start + q,
        prompt,
        prompt_tokens: promptTokens[q] ?? 0,
        top: topKHeads(kl[q], geometry, params.topK).map((h: HeadKl) => ({head: formatHead(h), layer: h.layer, head_index: h.head, kl: h.kl})),
      }
      return JSON.stringify(line)
    })
    appendFileSync(jsonlPath, `${lines.join('\n')}\n`)
    perQuery.push(...kl)
    log(`  prompts ${start + 1}-${start + chunk.length} of ${prompts.length} (${seconds(performance.now() - t0)} s)`)
  }

  const ranked = rankHeads(perQuery, geometry, params.topK)
  const summary: ShipsSummary = {
    kind: 'ships',
    model: model.name,
    model_source: model.kind === 'remote' ? facts.model : model.source,
    family: facts.family,
    num_layers: geometry.numLayers,
    num_heads: geometry.numHeads,
    vocab_size: facts.vocabSize,
    dataset: params.dataset.name,
    dataset_path: params.dataset.path,
    method: params.method,
    eps: params.eps,
    template: params.template,
    top_k: params.topK,
    smoothing: params.smoothing,
    n_queries: prompts.length,
    sidecar: sidecarInfo(client.endpoint, facts),
    requests,
    timings: {describe_s: seconds(tDescribe), forward_s: seconds(forwardMs), kl_s: seconds(klMs), total_s: seconds(performance.now() - t0)},
    heads: ranked,
  }
  writeFileSync(resolve(outDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`)
  return summary
}

// ---- the `ships` job kind for sweeps --------------------------------------------------------

/** Matrix axes (each a value or a list) and plain options of a ships job. */
const OPTION_KEYS = ['matrix', 'top_k', 'limit', 'smoothing'] as const

/** `1e-5` for 0.00001: short, stable, file-name safe. */
export function formatEps(eps: number): string {
  return eps.toExponential().replace('e+', 'e').replace(/\.?0+e/, 'e')
}

export const shipsKind: JobKind<ShipsParams, ShipsSummary> = {
  kind: 'ships',
  description: 'query-level Ships: KL(clean || one head ablated) for every head and query, ranked over the dataset',
  keys: OPTION_KEYS,
  parse(fields: Fields, context: ParseContext): JobSpec<ShipsParams>[] {
    const matrix = parseMatrix(fields, context, 'a ships matrix')
    const topK = fields.number('top_k', {default: 10, integer: true, min: 1}).value
    const limit = fields.has('limit') ? fields.number('limit', {integer: true, min: 1}).value : undefined
    const smoothing = fields.number('smoothing', {default: DEFAULT_SMOOTHING, min: 0}).value
    const prefix = fields.has('name') ? fields.string('name').value : 'ships'

    const jobs: JobSpec<ShipsParams>[] = []
    for (const {model, dataset, method, eps, template, nameParts} of matrixCells(matrix, prefix)) {
      jobs.push({kind: 'ships', name: nameParts.join('-'), model, params: {dataset, method, eps, template, topK, smoothing, limit}})
    }

    return jobs
  },
  run: (job, context) => runShips(job.model, job.params, context),
  headline: (summary) => summary.heads.slice(0, 5).map((h) => `${formatHead(h)} ${h.mean_kl.toExponential(2)}`).join(', '),
}
