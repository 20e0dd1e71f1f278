/**
 * One measured workload: a full Ships scan, or one Sahara step, run through the real job code
 * (runShips / runSearch, so pipelining and scoring are what users get) on one engine, with its
 * wall time split three ways:
 * - compute: the sidecar's model work (ForwardStats.compute_seconds, summed);
 * - scoring (exposed): time the sidecar had no request to work on while the CLI scored, i.e.
 *   TypeScript scoring not hidden behind the next request (the pipeline's idle time);
 * - transfer: the rest — tokenising, streaming and (de)serialising tensors on both sides, gRPC.
 * The total TypeScript scoring time is reported too (scoring_total_s); most of it overlaps compute.
 */
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import type {Dataset} from '../data/datasets.js'
import type {EngineName} from '../jobs/engine.js'
import type {RunContext} from '../jobs/registry.js'
import {runSearch} from '../jobs/search.js'
import type {ScoreKind} from '../jobs/search-scoring.js'
import {type StepLine, scoreOf} from '../jobs/search-steps.js'
import {type Method, type ShipsQueryLine, type Template, runShips} from '../jobs/ships.js'
import type {ResolvedModel} from '../models.js'
import {formatHead} from '../science/heads.js'

export interface Workload {
  model: ResolvedModel
  dataset: Dataset
  method: Method
  eps: number
  template: Template
  /** Prompts used (the dataset's first N). */
  prompts: number
  memoryBudgetGib: number
  /** Sahara step score. */
  score: ScoreKind
}

/** Where one run's time went, and how fast it was. */
export interface Measurement {
  engine: EngineName
  heads: number
  prompts: number
  wall_s: number
  heads_x_prompts_per_s: number
  /** Sidecar model work (ForwardStats.compute_seconds, summed). */
  compute_s: number
  /** TypeScript scoring the sidecar waited for (no request in flight). */
  scoring_s: number
  /** All TypeScript scoring (KL / angles), overlapped or not. */
  scoring_total_s: number
  /** wall - compute - scoring (at least 0): tokenising, streaming and decoding tensors, gRPC. */
  transfer_s: number
  /** (transfer + scoring) / wall = 1 - compute / wall: the share of wall time the sidecar was not computing. */
  overhead_share: number
  flops: number
  /** flops / compute_s. */
  flops_per_s: number
  forwards: number
  rows: number
  requests: number
  /** Requests whose sidecar sent no ForwardStats (then compute and FLOP figures are 0). */
  without_stats: number
}

function measurement(
  engine: EngineName,
  heads: number,
  prompts: number,
  wallS: number,
  scoring: {idle_s: number; total_s: number},
  stats: {compute_s: number; flops: number; forwards: number; rows: number; requests: number; without_stats: number},
): Measurement {
  const scoringS = Math.min(scoring.idle_s, Math.max(0, wallS - stats.compute_s))
  const transfer = Math.max(0, wallS - stats.compute_s - scoringS)
  return {
    engine,
    heads,
    prompts,
    wall_s: wallS,
    heads_x_prompts_per_s: wallS > 0 ? (heads * prompts) / wallS : 0,
    compute_s: stats.compute_s,
    scoring_s: scoringS,
    scoring_total_s: scoring.total_s,
    transfer_s: transfer,
    overhead_share: wallS > 0 ? Math.min(1, (transfer + scoringS) / wallS) : 0,
    flops: stats.flops,
    flops_per_s: stats.compute_s > 0 ? stats.flops / stats.compute_s : 0,
    forwards: stats.forwards,
    rows: stats.rows,
    requests: stats.requests,
    without_stats: stats.without_stats,
  }
}

export interface ShipsRun {
  measurement: Measurement
  /** KL per query, [query][layer * H + head]. */
  kl: number[][]
  /** Every head by mean KL, best first (names). */
  ranking: string[]
  meanKl: Map<string, number>
}

/** A full Ships scan (every head, every prompt) into `outDir`, on one engine. */
export async function measureShips(work: Workload, engine: EngineName, context: RunContext): Promise<ShipsRun> {
  const facts = await context.client.describe()
  const heads = facts.numLayers * facts.numHeads
  const summary = await runShips(
    work.model,
    {
      dataset: work.dataset,
      method: work.method,
      eps: work.eps,
      template: work.template,
      topK: heads,
      smoothing: 1e-12,
      limit: work.prompts,
      engineOptions: {engine, memoryBudgetGib: work.memoryBudgetGib},
    },
    context,
  )
  const t = summary.timings
  const lines = readFileSync(join(context.outDir, 'ships.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as ShipsQueryLine)
  const kl = lines.map((line) => {
    const row = new Array<number>(heads).fill(Number.NaN)
    for (const e of line.top) row[e.layer * facts.numHeads + e.head_index] = e.kl
    return row
  })
  return {
    measurement: measurement(engine, heads, summary.n_queries, t.total_s - t.describe_s, {idle_s: t.sidecar_idle_s, total_s: t.kl_s}, t.sidecar_stats),
    kl,
    ranking: summary.heads.map(formatHead),
    meanKl: new Map(summary.heads.map((h) => [formatHead(h), h.mean_kl])),
  }
}

export interface StepRun {
  measurement: Measurement
  chosen: string
  /** Every candidate head's score (degrees for angles, nats for kl), by head name. */
  scores: Map<string, number>
}

/** One Sahara step (every head scored, empty group; the clean pass included) into `outDir`, on one engine. */
export async function measureSearchStep(work: Workload, engine: EngineName, context: RunContext): Promise<StepRun> {
  const summary = await runSearch(
    work.model,
    {
      dataset: work.dataset,
      method: work.method,
      eps: work.eps,
      template: work.template,
      steps: 1,
      score: work.score,
      rMain: 1,
      centre: false,
      angleSum: 'nested',
      smoothing: 1e-12,
      limit: work.prompts,
      restart: true,
      engineOptions: {engine, memoryBudgetGib: work.memoryBudgetGib},
    },
    context,
  )
  const t = summary.timings
  const heads = summary.num_layers * summary.num_heads
  const line = JSON.parse(readFileSync(join(context.outDir, 'search.jsonl'), 'utf8').split('\n')[0]) as StepLine
  return {
    measurement: measurement(engine, heads, summary.n_queries, t.total_s - t.describe_s, {idle_s: t.sidecar_idle_s, total_s: t.score_s}, t.sidecar_stats),
    chosen: formatHead(summary.steps[0].head),
    scores: new Map(line.scores.map((e) => [formatHead(e), scoreOf(e, work.score)])),
  }
}
