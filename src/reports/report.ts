/**
 * What a report shows, built from a run's data (src/reports/run-data.ts) without I/O: heatmaps
 * (mean Ships and top-k counts of every ships job, step-1 scores of every search), the Sahara
 * traces, the ASR tables by number of heads beside random sets and the share of parameters
 * (src/reports/sweep-summary.ts's asrTables), per-query examples and the environment. Every table
 * is a `Table`, so the HTML (src/reports/html.ts) and the CSV export show the same rows.
 */
import type {AsrReplyLine} from '../jobs/asr.js'
import {decodeFloat} from '../jobs/engine.js'
import type {JobSpec} from '../jobs/registry.js'
import {scoreOf} from '../jobs/search-steps.js'
import type {HeadSelection} from '../science/head-sets.js'
import {formatHead} from '../science/heads.js'
import {type TracePoint, traceSvg} from './chart.js'
import {type Table, safeId} from './csv.js'
import type {HeatGrid} from './heatmap.js'
import type {AsrJob, RunData, SearchJob, ShipsJob} from './run-data.js'
import {type AsrTable, type FinishedJob, asrTables} from './sweep-summary.js'

export interface ExampleGroup {
  job: string
  heads: string
  method: string
  nFlipped: number
  n: number
  examples: AsrReplyLine[]
}

export interface Trace {
  job: string
  svg: string
}

export interface Report {
  title: string
  subtitle: string
  heatmaps: {job: string; grids: HeatGrid[]}[]
  traces: Trace[]
  asr: AsrTable[]
  examples: ExampleGroup[]
  /** Every table, in page order (also the CSV files). */
  tables: Table[]
}

export interface ReportOptions {
  /** asr jobs whose replies are shown (most flips first). */
  exampleJobs?: number
  /** replies shown per job (flipped first). */
  examplesPerJob?: number
}

const exp = (v: number) => v.toExponential(2)
const round = (v: number, digits = 6) => Number(v.toPrecision(digits))

/** Heads framed on a Ships heatmap: the top k by mean KL, k = the job's top_k but at most an eighth of the heads (2 of 16, 10 of 1,024). */
export function framedTop(s: {top_k: number; num_layers: number; num_heads: number}): number {
  return Math.min(s.top_k, Math.max(1, Math.ceil((s.num_layers * s.num_heads) / 8)))
}

export function shipsGrids(job: ShipsJob): HeatGrid[] {
  const s = job.summary
  const meanKl = new Array<number>(s.num_layers * s.num_heads).fill(Number.NaN)
  const counts = new Array<number>(s.num_layers * s.num_heads).fill(Number.NaN)
  for (const h of s.heads) {
    meanKl[h.layer * s.num_heads + h.head] = decodeFloat(h.mean_kl)
    counts[h.layer * s.num_heads + h.head] = h.topk_count
  }

  const k = Math.min(framedTop(s), s.heads.length)
  const marks = s.heads.slice(0, k).map((h) => h.layer * s.num_heads + h.head)
  const what = `${s.model} · ${s.dataset} · ${s.method.toUpperCase()}`
  return [
    {id: safeId(`${job.name}-mean-ships`), title: `Mean Ships (KL${s.logprob_support ? `, ${s.logprob_support}-token support` : ''}) — ${what}`, layers: s.num_layers, heads: s.num_heads, values: meanKl, format: exp, scale: 'log', marks, marksLabel: `top ${k} by mean KL`},
    {
      id: safeId(`${job.name}-topk-count`),
      title: `Top-${s.top_k} count of ${s.n_queries} queries — ${what}`,
      layers: s.num_layers,
      heads: s.num_heads,
      values: counts,
      format: (v) => String(Math.round(v)),
      marks,
      marksLabel: `top ${k} by mean KL`,
    },
  ]
}

const searchScore = (job: SearchJob) =>
  job.summary.score === 'angles'
    ? {label: 'angle (°)', format: (v: number) => v.toFixed(2)}
    : {label: job.summary.logprob_support ? `mean KL (${job.summary.logprob_support}-token support)` : 'mean KL', format: exp}

export function searchGrid(job: SearchJob): HeatGrid | undefined {
  const first = job.steps.find((s) => s.step === 1)
  if (!first) return undefined
  const s = job.summary
  const score = searchScore(job)
  const values = new Array<number>(s.num_layers * s.num_heads).fill(Number.NaN)
  for (const e of first.scores) values[e.layer * s.num_heads + e.head] = scoreOf(e, s.score)
  return {
    id: safeId(`${job.name}-step1`),
    title: `Sahara step 1 (each head alone), ${score.label} — ${s.model} · ${s.dataset} · ${s.method.toUpperCase()}`,
    layers: s.num_layers,
    heads: s.num_heads,
    values,
    format: score.format,
    scale: s.score === 'kl' ? 'log' : 'linear',
    marks: s.group.map((h) => h.layer * s.num_heads + h.head),
    marksLabel: `the group found (${s.group.length} steps)`,
  }
}

function tracePoints(job: SearchJob): TracePoint[] {
  return job.summary.steps.map((s) => ({step: s.step, head: formatHead(s.head), score: s.score, runnerUp: s.runner_up ? {head: formatHead(s.runner_up), score: s.runner_up.score} : null}))
}

/** Said wherever a scan's KLs are shown: over a support set they are lower bounds, not the full KL. */
function supportNote(s: {logprob_support?: number | null}): string {
  return s.logprob_support ? ` KL over each query's ${s.logprob_support} likeliest clean tokens and the rest of the mass (--logprob-support): a lower bound of the full KL.` : ''
}

function shipsTable(job: ShipsJob): Table {
  const s = job.summary
  return {
    id: safeId(`ships-${job.name}`),
    title: `Ships ranking — ${job.name}`,
    note: `${s.n_queries} queries, ${s.method.toUpperCase()} eps ${s.eps}; top-k count = queries with the head in their top ${s.top_k}.${supportNote(s)}`,
    columns: ['rank', 'head', 'layer', 'head_index', 'mean_kl', 'topk_count'],
    rows: s.heads.map((h, i) => [i + 1, formatHead(h), h.layer, h.head, h.mean_kl, h.topk_count]),
  }
}

function traceTable(job: SearchJob): Table {
  const s = job.summary
  return {
    id: safeId(`search-${job.name}`),
    title: `Sahara trace — ${job.name}`,
    note: `score ${s.score}${s.score === 'angles' ? ` (r_main ${s.r_main}, ${s.centre ? 'centred' : 'not centred'})` : ''}; group ${s.group.map(formatHead).join(', ')}.${supportNote(s)}`,
    columns: ['step', 'head', 'score', 'runner_up', 'runner_up_score'],
    rows: s.steps.map((st) => [st.step, formatHead(st.head), round(st.score), st.runner_up ? formatHead(st.runner_up) : null, st.runner_up ? round(st.runner_up.score) : null]),
  }
}

/** asr jobs outside a sweep: the head source read back from the label the job wrote. */
function selectionOf(job: AsrJob): HeadSelection {
  const s = job.summary
  const random = /^random:(\d+) seed (\d+)/.exec(s.heads_label)
  if (random) return {kind: 'random', k: Number(random[1]), seed: Number(random[2]), avoid: []}
  const from = / of the (ships|search) run (.+)\)$/.exec(s.heads_label)
  if (from) return {kind: 'from', dir: from[2], source: from[1] as 'ships' | 'search', heads: s.heads}
  return s.heads.length > 0 ? {kind: 'list', heads: s.heads} : {kind: 'none'}
}

/** The sweep's own tables when there is one; otherwise the same function over the folder's asr jobs. */
export function asrTablesOf(data: RunData): AsrTable[] {
  if (data.sweep?.asr_tables) return data.sweep.asr_tables
  const finished: FinishedJob[] = data.asr.map((job) => {
    const spec: JobSpec = {kind: 'asr', name: job.name, model: {name: job.summary.model, source: job.summary.model_source, kind: 'local'}, params: {heads: selectionOf(job)}}
    return {spec, out: job.name, result: job.summary, headline: ''}
  })
  return asrTables(finished, finished.map((f) => f.spec))
}

function asrTableOf(table: AsrTable, index: number): Table {
  const columns = [
    'heads_from', 'k', 'heads', 'asr', 'increase', 'flip_rate', 'n_flipped',
    'random_asr_mean', 'random_asr_sd', 'random_repeats', 'random_increase_mean', 'random_flip_rate_mean', 'parameters_percent', 'parameters_modified',
  ]
  const rows = table.rows.map((r) => [
    r.source, r.k, r.heads.join(','), r.asr, round(r.increase), r.flip_rate, r.n_flipped,
    r.random ? round(r.random.asr_mean) : null, r.random ? round(r.random.asr_sd) : null, r.random?.repeats ?? null,
    r.random ? round(r.random.increase_mean) : null, r.random?.flip_rate_mean === null || r.random === null ? null : round(r.random.flip_rate_mean),
    round(r.parameters_percent), r.parameters_modified,
  ])
  for (const r of table.random.filter((r) => !table.rows.some((row) => row.k === r.k))) {
    rows.push(['random only', r.k, null, null, null, null, null, round(r.asr_mean), round(r.asr_sd), r.repeats, round(r.increase_mean), r.flip_rate_mean === null ? null : round(r.flip_rate_mean), null, null])
  }

  return {
    id: safeId(`asr-${index + 1}-${table.model}-${table.dataset}-${table.method}`),
    title: `ASR by number of heads — ${table.model} · ${table.dataset} · ${table.method.toUpperCase()} eps ${table.eps}`,
    note:
      `${table.n} prompts, ${table.sampling}, ${table.max_new_tokens} new tokens, judge ${table.judge}; clean model ASR ${table.baseline_asr.toFixed(3)} ` +
      `(refuses ${table.n_refused_baseline} of ${table.n}). Random = mean ± sd over R random sets of k heads; parameters = share of the model's weights the ablation modifies.`,
    columns,
    rows,
  }
}

/**
 * `n` replies of one job: flipped ones first (up to two thirds of n), then one still refused with
 * the heads ablated and one the clean model already answered, then more flipped ones; by index.
 */
export function pickReplies(replies: readonly AsrReplyLine[], n: number): AsrReplyLine[] {
  const flipped = replies.filter((r) => r.flipped)
  const stillRefused = replies.filter((r) => !r.flipped && r.clean.verdict.refused)
  const cleanComplied = replies.filter((r) => !r.clean.verdict.refused)
  const first = flipped.slice(0, Math.max(1, Math.ceil((2 * n) / 3)))
  const picked = [...first, ...stillRefused.slice(0, 1), ...cleanComplied.slice(0, 1)]
  for (const r of [...flipped.slice(first.length), ...stillRefused.slice(1), ...cleanComplied.slice(1)]) picked.push(r)
  return picked.slice(0, n).sort((a, b) => a.index - b.index)
}

/** Replies worth reading: the jobs with named (non-random) heads that flip most, flipped replies first. */
export function selectExamples(jobs: readonly AsrJob[], options: ReportOptions = {}): ExampleGroup[] {
  const withHeads = jobs.filter((j) => j.summary.heads.length > 0 && j.replies.length > 0)
  const named = withHeads.filter((j) => !j.summary.heads_label.startsWith('random:'))
  const pool = named.length > 0 ? named : withHeads
  return [...pool]
    .sort((a, b) => b.summary.n_flipped - a.summary.n_flipped || a.summary.heads.length - b.summary.heads.length || a.name.localeCompare(b.name))
    .slice(0, options.exampleJobs ?? 4)
    .map((job) => ({
      job: job.name,
      heads: job.summary.head_names.join(','),
      method: job.summary.method,
      nFlipped: job.summary.n_flipped,
      n: job.summary.n,
      examples: pickReplies(job.replies, options.examplesPerJob ?? 6),
    }))
}

const verdictText = (v: {refused: boolean; rule?: string; keyword?: string}) => (v.refused ? `refused (${v.keyword ? `"${v.keyword}"` : (v.rule ?? 'rule')})` : 'complied')

function examplesTable(groups: readonly ExampleGroup[]): Table {
  return {
    id: 'examples',
    title: 'Examples',
    columns: ['job', 'heads', 'index', 'prompt', 'clean_reply', 'clean_verdict', 'ablated_reply', 'ablated_verdict', 'flipped'],
    rows: groups.flatMap((g) => g.examples.map((e) => [g.job, g.heads, e.index, e.prompt, e.clean.reply, verdictText(e.clean.verdict), e.ablated?.reply ?? null, e.ablated ? verdictText(e.ablated.verdict) : null, e.flipped ? 'yes' : 'no'])),
  }
}

function environmentTable(data: RunData): Table {
  const jobs = [...data.ships, ...data.searches, ...data.asr]
  return {
    id: 'environment',
    title: 'Jobs, configuration and environment',
    columns: ['job', 'kind', 'model', 'model_source', 'family', 'dataset', 'n', 'method', 'eps', 'template', 'device', 'dtype', 'sidecar', 'torch', 'transformers', 'total_s'],
    rows: jobs.map((j) => {
      const s = j.summary
      const n = s.kind === 'asr' ? s.n : s.n_queries
      return [j.name, s.kind, s.model, s.model_source, s.family, s.dataset, n, s.method, s.eps, s.template, s.sidecar.device, s.sidecar.dtype, s.sidecar.sidecar_version, s.sidecar.torch_version, s.sidecar.transformers_version, s.timings.total_s]
    }),
  }
}

export function buildReport(data: RunData, options: ReportOptions = {}): Report {
  const heatmaps = [
    ...data.ships.map((job) => ({job: job.name, grids: shipsGrids(job)})),
    ...data.searches.flatMap((job) => {
      const grid = searchGrid(job)
      return grid ? [{job: job.name, grids: [grid]}] : []
    }),
  ]
  const traces = data.searches.map((job) => ({
    job: job.name,
    svg: traceSvg(tracePoints(job), {title: `Sahara trace — ${job.name}`, yLabel: searchScore(job).label, format: searchScore(job).format}),
  }))
  const asr = asrTablesOf(data)
  const examples = selectExamples(data.asr, options)
  const tables = [...data.ships.map(shipsTable), ...data.searches.map(traceTable), ...asr.map(asrTableOf), ...(examples.length ? [examplesTable(examples)] : []), environmentTable(data)]
  const totalS = [...data.ships, ...data.searches, ...data.asr].reduce((a, j) => a + j.summary.timings.total_s, 0)
  const models = [...new Set([...data.ships, ...data.searches, ...data.asr].map((j) => j.summary.model))]
  const title = data.sweep ? `Sahara sweep ${data.sweep.sweep}` : data.kind === 'job' ? `Sahara ${[...data.ships, ...data.searches, ...data.asr][0].summary.kind} job` : 'Sahara runs'
  const subtitle = [
    data.dir,
    data.sweep?.description,
    data.sweep ? `sweep file ${data.sweep.file}` : undefined,
    `model ${models.join(', ')}`,
    `${data.ships.length} ships, ${data.searches.length} search, ${data.asr.length} asr jobs`,
    `${totalS.toFixed(1)} s of job time`,
    data.sweep ? `${data.sweep.jobs_done} of ${data.sweep.jobs_total} jobs done, updated ${data.sweep.updated_at}` : undefined,
  ]
    .filter(Boolean)
    .join(' · ')
  return {title, subtitle, heatmaps, traces, asr, examples, tables}
}
