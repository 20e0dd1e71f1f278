/**
 * Do two runs single out the same safety heads? The top-k heads of two rankings (two models, two
 * methods, two datasets) compared: shared heads, Jaccard index |A ∩ B| / |A ∪ B| at every k up to
 * K beside what two random k-sets of the N heads share on average (k²/N) and how often they share as
 * many (hypergeometric p), and Spearman's rank
 * correlation of the full rankings over the heads both scored. A ranking is a ships job's heads
 * by mean KL, or a search job's group in the order chosen. Pure, except loadRanking.
 */
import {decodeFloat} from '../jobs/engine.js'
import type {Head} from '../science/heads.js'
import {formatHead} from '../science/heads.js'
import type {Table} from './csv.js'
import {type HeatGrid} from './heatmap.js'
import {type RunData, RunDataError, loadRun} from './run-data.js'

export interface Ranking {
  /** What it is, for a reader: "organism-natural · jailbreakbench · UA (ships-...)". */
  label: string
  job: string
  dir: string
  kind: 'ships' | 'search'
  model: string
  layers: number
  heads: number
  /** Best first. */
  order: Head[]
  /** layers × heads, layer-major: mean KL (ships) or the step a head was chosen at (search); NaN = none. */
  values: number[]
}

export interface Overlap {
  k: number
  shared: string[]
  onlyA: string[]
  onlyB: string[]
  jaccard: number
  /** E|A ∩ B| for two random k-sets of N heads: k² / N. */
  expectedShared: number
  /** P(|A ∩ B| >= shared) for two random k-sets of N heads (hypergeometric tail). */
  pValue: number
}

export interface Comparison {
  a: Omit<Ranking, 'values'>
  b: Omit<Ranking, 'values'>
  topK: number
  /** At k = topK. */
  overlap: Overlap
  /** At k = 1 .. topK. */
  byK: Overlap[]
  /** Spearman's rho over the heads both rank (null under 3 such heads). */
  spearman: number | null
}

export function jaccard(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  const union = new Set([...a, ...b]).size
  if (union === 0) return 1
  return [...a].filter((x) => b.has(x)).length / union
}

const logChoose = (n: number, k: number) => {
  let s = 0
  for (let i = 0; i < k; i++) s += Math.log((n - i) / (i + 1))
  return s
}

/** P(X >= x) for X ~ Hypergeometric(N, K = k, n = k): how often two random k-sets of N share x or more. */
export function sharedTail(nHeads: number, k: number, x: number): number {
  let p = 0
  for (let j = Math.max(0, x); j <= k; j++) {
    if (k - j > nHeads - k) continue
    p += Math.exp(logChoose(k, j) + logChoose(nHeads - k, k - j) - logChoose(nHeads, k))
  }

  return Math.min(1, p)
}

export function overlapAt(a: readonly string[], b: readonly string[], k: number, nHeads: number): Overlap {
  const topA = a.slice(0, k)
  const topB = b.slice(0, k)
  const setB = new Set(topB)
  const setA = new Set(topA)
  return {
    k,
    shared: topA.filter((h) => setB.has(h)),
    onlyA: topA.filter((h) => !setB.has(h)),
    onlyB: topB.filter((h) => !setA.has(h)),
    jaccard: jaccard(setA, setB),
    expectedShared: (k * k) / nHeads,
    pValue: sharedTail(nHeads, k, topA.filter((h) => setB.has(h)).length),
  }
}

/** Ranks 1..n, ties given their mean rank. */
function ranks(values: readonly number[]): number[] {
  const order = values.map((v, i) => [v, i] as const).sort((x, y) => x[0] - y[0])
  const out = new Array<number>(values.length)
  for (let i = 0; i < order.length; ) {
    let j = i
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++
    for (let t = i; t <= j; t++) out[order[t][1]] = (i + j) / 2 + 1
    i = j + 1
  }

  return out
}

/** Spearman's rho: Pearson correlation of the ranks (ties averaged); null under 3 pairs or no spread. */
export function spearman(x: readonly number[], y: readonly number[]): number | null {
  if (x.length !== y.length || x.length < 3) return null
  const [rx, ry] = [ranks(x), ranks(y)]
  const mean = (r: number[]) => r.reduce((s, v) => s + v, 0) / r.length
  const [mx, my] = [mean(rx), mean(ry)]
  let sxy = 0
  let sxx = 0
  let syy = 0
  for (let i = 0; i < rx.length; i++) {
    sxy += (rx[i] - mx) * (ry[i] - my)
    sxx += (rx[i] - mx) ** 2
    syy += (ry[i] - my) ** 2
  }

  return sxx === 0 || syy === 0 ? null : sxy / Math.sqrt(sxx * syy)
}

export function compareRankings(a: Ranking, b: Ranking, topK: number): Comparison {
  if (a.layers !== b.layers || a.heads !== b.heads) {
    throw new RunDataError(`cannot compare ${a.job} (L=${a.layers} H=${a.heads}) with ${b.job} (L=${b.layers} H=${b.heads}): different head grids`)
  }

  const nHeads = a.layers * a.heads
  const [na, nb] = [a.order.map(formatHead), b.order.map(formatHead)]
  const k = Math.max(1, Math.min(topK, na.length, nb.length))
  const byK = Array.from({length: k}, (_, i) => overlapAt(na, nb, i + 1, nHeads))
  const both = a.values.flatMap((v, i) => (Number.isFinite(v) && Number.isFinite(b.values[i]) ? [i] : []))
  // search values are step numbers (1 = best): their negation ranks like a score
  const score = (r: Ranking, i: number) => (r.kind === 'search' ? -r.values[i] : r.values[i])
  const rho = spearman(both.map((i) => score(a, i)), both.map((i) => score(b, i)))
  const strip = ({values: _v, ...rest}: Ranking) => rest
  return {a: strip(a), b: strip(b), topK: k, overlap: byK[k - 1], byK, spearman: rho}
}

/** The ranking of a ships or search job in `dir` (a job folder, or a sweep folder with `job` naming one). */
export function loadRanking(dir: string, job?: string): Ranking {
  const data: RunData = loadRun(dir)
  const candidates = [...data.ships.map((j) => ({...j, kind: 'ships' as const})), ...data.searches.map((j) => ({...j, kind: 'search' as const}))]
  const exact = job === undefined ? [] : candidates.filter((c) => c.name === job)
  const matching = job === undefined ? candidates : exact.length > 0 ? exact : candidates.filter((c) => c.name.includes(job))
  const ships = matching.filter((c) => c.kind === 'ships')
  const chosen = matching.length === 1 ? matching[0] : job === undefined && ships.length === 1 ? ships[0] : undefined
  if (!chosen) {
    const names = candidates.map((c) => c.name).join(', ') || 'none'
    throw new RunDataError(
      matching.length === 0 ? `${dir}: no ships or search job${job ? ` matching ${JSON.stringify(job)}` : ''} (jobs: ${names})` : `${dir}: ${matching.length} jobs match; name one with --job-a/--job-b (jobs: ${matching.map((c) => c.name).join(', ')})`,
    )
  }

  const s = chosen.summary
  const values = new Array<number>(s.num_layers * s.num_heads).fill(Number.NaN)
  let order: Head[]
  if (chosen.kind === 'ships') {
    order = chosen.summary.heads.map(({layer, head}) => ({layer, head}))
    for (const h of chosen.summary.heads) values[h.layer * s.num_heads + h.head] = decodeFloat(h.mean_kl)
  } else {
    order = chosen.summary.group
    for (const [i, h] of order.entries()) values[h.layer * s.num_heads + h.head] = i + 1
  }

  return {
    label: `${s.model} · ${s.dataset} · ${s.method.toUpperCase()} (${chosen.kind} ${chosen.name})`,
    job: chosen.name,
    dir: chosen.dir,
    kind: chosen.kind,
    model: s.model,
    layers: s.num_layers,
    heads: s.num_heads,
    order,
    values,
  }
}

const indexOf = (r: Pick<Ranking, 'heads'>, name: string) => {
  const m = /^L(\d+)H(\d+)$/.exec(name)!
  return Number(m[1]) * r.heads + Number(m[2])
}

/** Side by side: each ranking's values with its top k framed, and where the two top-k sets agree. */
export function comparisonGrids(a: Ranking, b: Ranking, c: Comparison): HeatGrid[] {
  const k = c.topK
  const grid = (r: Ranking, side: 'A' | 'B', top: string[]): HeatGrid => ({
    id: `compare-${side}`,
    title: `${side}: ${r.label}`,
    layers: r.layers,
    heads: r.heads,
    values: r.values,
    format: r.kind === 'ships' ? (v) => v.toExponential(2) : (v) => `step ${v}`,
    scale: r.kind === 'ships' ? 'log' : 'linear',
    marks: top.map((h) => indexOf(r, h)),
    marksLabel: `top ${k}`,
  })
  const agreement = new Array<number>(a.layers * a.heads).fill(0)
  for (const h of c.overlap.onlyA) agreement[indexOf(a, h)] = 1
  for (const h of c.overlap.onlyB) agreement[indexOf(a, h)] = 2
  for (const h of c.overlap.shared) agreement[indexOf(a, h)] = 3
  return [
    grid(a, 'A', [...c.overlap.shared, ...c.overlap.onlyA]),
    grid(b, 'B', [...c.overlap.shared, ...c.overlap.onlyB]),
    {
      id: 'compare-overlap',
      title: `Top ${k}: in A only, B only, both (Jaccard ${c.overlap.jaccard.toFixed(3)})`,
      layers: a.layers,
      heads: a.heads,
      values: agreement,
      format: (v) => ['', 'A', 'B', 'both'][Math.round(v)] ?? '',
      marks: c.overlap.shared.map((h) => indexOf(a, h)),
      marksLabel: 'shared',
    },
  ]
}

export function comparisonTables(a: Ranking, b: Ranking, c: Comparison): Table[] {
  const rank = (r: Ranking) => new Map(r.order.map((h, i) => [formatHead(h), i + 1]))
  const [ra, rb] = [rank(a), rank(b)]
  const value = (r: Ranking, name: string) => {
    const v = r.values[indexOf(r, name)]
    return Number.isFinite(v) ? v : null
  }

  const all = [...new Set([...a.order, ...b.order].map(formatHead))].sort((x, y) => (ra.get(x) ?? 1e9) + (rb.get(x) ?? 1e9) - (ra.get(y) ?? 1e9) - (rb.get(y) ?? 1e9))
  return [
    {
      id: 'overlap',
      title: 'Top-k overlap',
      note: `A = ${a.label}; B = ${b.label}. Expected shared = what two random k-sets of the ${a.layers * a.heads} heads share on average (k²/N); p = how often they share at least as many (hypergeometric). Spearman's rho of the full rankings: ${c.spearman === null ? 'n/a' : c.spearman.toFixed(3)}.`,
      columns: ['k', 'shared', 'jaccard', 'expected_shared_by_chance', 'p_value', 'shared_heads', 'only_a', 'only_b'],
      rows: c.byK.map((o) => [o.k, o.shared.length, Number(o.jaccard.toFixed(6)), Number(o.expectedShared.toFixed(6)), Number(o.pValue.toPrecision(4)), o.shared.join(','), o.onlyA.join(','), o.onlyB.join(',')]),
    },
    {
      id: 'ranks',
      title: 'Heads ranked by A and by B',
      columns: ['head', 'rank_a', a.kind === 'ships' ? 'mean_kl_a' : 'step_a', 'rank_b', b.kind === 'ships' ? 'mean_kl_b' : 'step_b', `in_top${c.topK}_a`, `in_top${c.topK}_b`],
      rows: all.map((h) => [h, ra.get(h) ?? null, value(a, h), rb.get(h) ?? null, value(b, h), (ra.get(h) ?? Infinity) <= c.topK ? 'yes' : 'no', (rb.get(h) ?? Infinity) <= c.topK ? 'yes' : 'no']),
    },
  ]
}
