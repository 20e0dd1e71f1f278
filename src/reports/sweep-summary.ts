/**
 * The sweep's own summary: every finished job in one line, and the paper's Table 3 for its asr
 * jobs — ASR and its increase over the clean model by number of heads ablated, for each source of
 * heads (a search group's first k, a Ships ranking's top k, a named set), beside what k random
 * heads do (mean over the seeds) and the share of the model's parameters the ablation touches.
 * Pure: built from the jobs and their results; src/jobs/runner.ts writes it as
 * runs/<sweep>/summary.json and runs/<sweep>/summary.md.
 */
import type {AsrSummary} from '../jobs/asr.js'
import type {JobSpec} from '../jobs/registry.js'
import {formatHead} from '../science/heads.js'
import type {HeadSelection} from '../science/head-sets.js'

export interface FinishedJob {
  spec: JobSpec
  /** The job's folder, relative to the sweep's. */
  out: string
  result: unknown
  headline: string
}

/** One row of an ASR table: a head source at one k. */
export interface AsrRow {
  source: string
  k: number
  heads: string[]
  job: string
  asr: number
  /** asr - baseline_asr */
  increase: number
  flip_rate: number | null
  n_flipped: number
  parameters_percent: number
  parameters_modified: number
  /** Random k-head sets of the same cell: their mean ASR and flip rate, and how many (R). */
  random: RandomBaseline | null
}

export interface RandomBaseline {
  k: number
  repeats: number
  asr_mean: number
  asr_sd: number
  increase_mean: number
  flip_rate_mean: number | null
  flip_rate_sd: number | null
  jobs: string[]
}

/** The asr jobs of one cell: same model, dataset, method, eps, template, sampling, judge, tokens. */
export interface AsrTable {
  model: string
  dataset: string
  method: string
  eps: number
  template: string
  sampling: string
  judge: string
  max_new_tokens: number
  n: number
  baseline_asr: number
  n_refused_baseline: number
  rows: AsrRow[]
  /** Random baselines by k, including those with no head source of the same k. */
  random: RandomBaseline[]
}

export interface SweepSummary {
  sweep: string
  file: string
  description?: string
  started_at: string
  updated_at: string
  jobs_total: number
  jobs_done: number
  jobs: {name: string; kind: string; entry: string | undefined; model: string; out: string; headline: string}[]
  asr_tables: AsrTable[]
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
/** Sample standard deviation (n - 1); 0 for a single value. */
function sd(xs: number[]): number {
  if (xs.length < 2) return 0
  const m = mean(xs)
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1))
}

const isAsr = (job: FinishedJob): job is FinishedJob & {result: AsrSummary} => job.spec.kind === 'asr'

function cellKey(s: AsrSummary): string {
  return JSON.stringify([s.model, s.dataset, s.method, s.eps, s.template, s.sampling, s.judge, s.max_new_tokens])
}

/** Where a job's heads came from, in words a reader of the table understands. */
function sourceOf(selection: HeadSelection, jobs: Map<string, JobSpec>): string {
  switch (selection.kind) {
    case 'job': {
      const target = jobs.get(selection.job)
      const entry = target?.entry ?? selection.job
      return target?.kind === 'ships' ? `${entry} (Ships top-k)` : `${entry} (Sahara group)`
    }
    case 'from':
      return `${selection.dir} (${selection.source})`
    case 'list':
      return 'named heads'
    case 'none':
      return 'none'
    case 'random':
      return 'random'
  }
}

function randomBaselines(jobs: (FinishedJob & {result: AsrSummary})[]): RandomBaseline[] {
  const byK = new Map<number, (FinishedJob & {result: AsrSummary})[]>()
  for (const job of jobs) {
    const k = job.result.heads.length
    byK.set(k, [...(byK.get(k) ?? []), job])
  }

  return [...byK.entries()]
    .sort(([a], [b]) => a - b)
    .map(([k, list]) => {
      const asr = list.map((j) => j.result.asr)
      const flips = list.flatMap((j) => (j.result.flip_rate === null ? [] : [j.result.flip_rate]))
      return {
        k,
        repeats: list.length,
        asr_mean: mean(asr),
        asr_sd: sd(asr),
        increase_mean: mean(list.map((j) => j.result.asr - j.result.baseline_asr)),
        flip_rate_mean: flips.length ? mean(flips) : null,
        flip_rate_sd: flips.length ? sd(flips) : null,
        jobs: list.map((j) => j.spec.name),
      }
    })
}

export function asrTables(finished: readonly FinishedJob[], specs: readonly JobSpec[]): AsrTable[] {
  const byName = new Map(specs.map((s) => [s.name, s]))
  const cells = new Map<string, (FinishedJob & {result: AsrSummary})[]>()
  for (const job of finished.filter(isAsr)) {
    const key = cellKey(job.result)
    cells.set(key, [...(cells.get(key) ?? []), job])
  }

  return [...cells.values()].map((jobs) => {
    const first = jobs[0].result
    const selection = (job: FinishedJob) => (job.spec.params as {heads: HeadSelection}).heads
    const random = randomBaselines(jobs.filter((j) => selection(j).kind === 'random'))
    const rows = jobs
      .filter((j) => selection(j).kind !== 'random' && j.result.heads.length > 0)
      .map((j): AsrRow => {
        const s = j.result
        return {
          source: sourceOf(selection(j), byName),
          k: s.heads.length,
          heads: s.heads.map(formatHead),
          job: j.spec.name,
          asr: s.asr,
          increase: s.asr - s.baseline_asr,
          flip_rate: s.flip_rate,
          n_flipped: s.n_flipped,
          parameters_percent: s.parameters.percent,
          parameters_modified: s.parameters.modified,
          random: random.find((r) => r.k === s.heads.length) ?? null,
        }
      })
      .sort((a, b) => a.source.localeCompare(b.source) || a.k - b.k)
    return {
      model: first.model,
      dataset: first.dataset,
      method: first.method,
      eps: first.eps,
      template: first.template,
      sampling: first.sampling,
      judge: first.judge,
      max_new_tokens: first.max_new_tokens,
      n: first.n,
      baseline_asr: first.baseline_asr,
      n_refused_baseline: first.n_refused_baseline,
      rows,
      random,
    }
  })
}

const fixed = (x: number) => x.toFixed(3)
const signed = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(3)}`
const rate = (x: number | null) => (x === null ? 'n/a' : fixed(x))

/** Percent with enough digits for 1e-4 % of a 7B model. */
function percent(p: number): string {
  if (p === 0) return '0%'
  const digits = Math.max(2, Math.min(6, 1 - Math.floor(Math.log10(Math.abs(p)))))
  return `${p.toFixed(digits)}%`
}

function randomCell(r: RandomBaseline | null, field: 'asr' | 'flip'): string {
  if (r === null) return '—'
  if (field === 'asr') return `${fixed(r.asr_mean)} ± ${fixed(r.asr_sd)} (R=${r.repeats})`
  return r.flip_rate_mean === null ? 'n/a' : `${fixed(r.flip_rate_mean)} ± ${fixed(r.flip_rate_sd ?? 0)}`
}

export function asrTableMarkdown(table: AsrTable): string {
  const lines = [
    `### ${table.model} · ${table.dataset} · ${table.method.toUpperCase()} eps ${table.eps} · ${table.template} template`,
    '',
    `${table.n} prompts, ${table.sampling}, ${table.max_new_tokens} new tokens, judge ${table.judge}. ` +
      `Clean model: ASR ${fixed(table.baseline_asr)} (refuses ${table.n_refused_baseline} of ${table.n}).`,
    '',
    '| heads from | k | heads | ASR | increase | flip rate | random k heads: ASR | random: increase | random: flip rate | parameters modified |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const row of table.rows) {
    lines.push(
      `| ${row.source} | ${row.k} | ${row.heads.join(',')} | ${fixed(row.asr)} | ${signed(row.increase)} | ${rate(row.flip_rate)} | ` +
        `${randomCell(row.random, 'asr')} | ${row.random ? signed(row.random.increase_mean) : '—'} | ${randomCell(row.random, 'flip')} | ` +
        `${percent(row.parameters_percent)} (${row.parameters_modified.toLocaleString('en-US')}) |`,
    )
  }

  for (const r of table.random.filter((r) => !table.rows.some((row) => row.k === r.k))) {
    lines.push(`| random only | ${r.k} | (R=${r.repeats} sets) | — | — | — | ${randomCell(r, 'asr')} | ${signed(r.increase_mean)} | ${randomCell(r, 'flip')} | — |`)
  }

  return lines.join('\n')
}

export function sweepMarkdown(summary: SweepSummary): string {
  const parts = [
    `# Sweep ${summary.sweep}`,
    '',
    ...(summary.description ? [summary.description, ''] : []),
    `${summary.file} — ${summary.jobs_done} of ${summary.jobs_total} jobs done (started ${summary.started_at}, updated ${summary.updated_at}).`,
    '',
  ]
  if (summary.asr_tables.length > 0) {
    parts.push('## Attack success rate by number of heads ablated (the paper\'s Table 3)', '')
    parts.push(
      'increase = ASR − the clean model\'s ASR on the same prompts; flip rate = share of the prompts the clean model refuses that the ablated ' +
        'model no longer refuses; random = mean ± sd over R random head sets of the same size; parameters modified = weights the ablation ' +
        'scales or replaces, of the model\'s total.',
      '',
    )
    for (const table of summary.asr_tables) parts.push(asrTableMarkdown(table), '')
  }

  parts.push('## Jobs', '', '| job | kind | result |', '|---|---|---|')
  for (const job of summary.jobs) parts.push(`| ${job.name} | ${job.kind} | ${job.headline.replaceAll('|', '\\|')} |`)
  return `${parts.join('\n')}\n`
}
