/**
 * Head sets for an ablation: named (`L2H26,L3H8`), taken from a ships or search run's summary,
 * or drawn at random (`random:K`, seeded, optionally avoiding some heads). Parsing happens
 * before a model is known; resolution checks every head against the model's L and H and
 * draws the random ones. Pure: a run directory's summary is read elsewhere (src/data/head-sets.ts)
 * and handed in as parsed JSON.
 */
import {type Geometry, type Head, HeadNameError, allHeads, formatHead, parseHead} from './heads.js'
import {checkSeed, sample} from './prng.js'

export type HeadSelection =
  | {kind: 'none'}
  | {kind: 'list'; heads: Head[]}
  | {kind: 'from'; dir: string; source: 'ships' | 'search'; heads: Head[]; top?: number}
  | {kind: 'random'; k: number; seed: number; avoid: Head[]}
  /** The top-`top` heads of another job of the same sweep, read when this job runs (sweeps only). */
  | {kind: 'job'; job: string; top: number}

export interface ResolvedHeads {
  heads: Head[]
  /** How the set was chosen, in words: `L1H2,L2H0`, `random:3 seed 1 avoiding L1H2,L2H0`, ... */
  label: string
}

const RANDOM = /^random:(\d+)$/

/** `L1H2,L2H0` -> heads; whitespace allowed, duplicates and empty entries are errors. */
export function parseHeadList(text: string, what = '--heads'): Head[] {
  const parts = text.split(',').map((p) => p.trim())
  if (parts.length === 0 || parts.some((p) => p === '')) {
    throw new HeadNameError(`${what} ${JSON.stringify(text)}: expected comma-separated heads like L2H26,L3H8`)
  }
  const heads = parts.map((p) => {
    try {
      return parseHead(p)
    } catch (error) {
      throw new HeadNameError(`${what}: ${(error as Error).message}`)
    }
  })
  const seen = new Set<string>()
  for (const h of heads) {
    const name = formatHead(h)
    if (seen.has(name)) throw new HeadNameError(`${what}: head ${name} given twice`)
    seen.add(name)
  }
  return heads
}

/**
 * The --heads value: a list of heads or `random:K` (then `seed` is required and `avoid` applies).
 * Undefined = no heads (the clean model only).
 */
export function parseHeadsOption(value: string | undefined, options: {seed?: number; avoid?: string} = {}): HeadSelection {
  if (value === undefined) {
    if (options.avoid !== undefined) throw new HeadNameError('--avoid applies to --heads random:K only')
    return {kind: 'none'}
  }

  if (value.trim() === '') throw new HeadNameError('--heads is empty: name heads (L2H26,L3H8) or random:K, or leave it out for the clean model only')
  const random = RANDOM.exec(value.trim())
  if (random) {
    const k = Number(random[1])
    if (k < 1) throw new HeadNameError(`--heads ${value}: K must be at least 1`)
    if (options.seed === undefined) throw new HeadNameError(`--heads ${value} needs --seed N (so the draw can be repeated)`)
    try {
      checkSeed(options.seed)
    } catch (error) {
      throw new HeadNameError(`--seed: ${(error as Error).message}`)
    }
    const avoid = options.avoid === undefined ? [] : parseHeadList(options.avoid, '--avoid')
    return {kind: 'random', k, seed: options.seed, avoid}
  }
  if (value.trim().startsWith('random')) throw new HeadNameError(`--heads ${JSON.stringify(value)}: expected random:K with K a positive integer, e.g. random:3`)
  if (options.avoid !== undefined) throw new HeadNameError('--avoid applies to --heads random:K only')
  return {kind: 'list', heads: parseHeadList(value)}
}

function isHeadObject(x: unknown): x is Head {
  const h = x as Head
  return typeof h === 'object' && h !== null && Number.isInteger(h.layer) && Number.isInteger(h.head) && h.layer >= 0 && h.head >= 0
}

/**
 * Heads from a run's summary.json: a search run's `group: [{layer, head}]` (all of it, or its
 * first `top`), or a ships run's `heads: [{layer, head, mean_kl, ...}]` ranked by mean KL (the
 * first `top`, required). `where` names the file in errors.
 */
export function headsFromSummary(summary: unknown, top: number | undefined, where: string): {source: 'ships' | 'search'; heads: Head[]} {
  if (top !== undefined && !(Number.isInteger(top) && top >= 1)) throw new HeadNameError(`--top must be an integer >= 1, got ${top}`)
  const s = summary as {group?: unknown; heads?: unknown}
  if (typeof summary !== 'object' || summary === null) throw new HeadNameError(`${where}: expected a JSON object`)
  if (Array.isArray(s.group)) {
    if (!s.group.every(isHeadObject)) throw new HeadNameError(`${where}: "group" must be a list of {layer, head}`)
    const group = s.group.map(({layer, head}) => ({layer, head}))
    if (group.length === 0) throw new HeadNameError(`${where}: the search group is empty`)
    if (top !== undefined && top > group.length) throw new HeadNameError(`${where}: --top ${top} but the search group has ${group.length} heads`)
    return {source: 'search', heads: top === undefined ? group : group.slice(0, top)}
  }
  if (Array.isArray(s.heads)) {
    // mean_kl: a number, or "Infinity"/"NaN" (or null, from earlier versions) where it was not finite
    if (!s.heads.every((h) => isHeadObject(h) && 'mean_kl' in (h as object))) {
      throw new HeadNameError(`${where}: "heads" must be a list of {layer, head, mean_kl}`)
    }
    if (top === undefined) throw new HeadNameError(`${where} is a ships summary: say how many of its top heads with --top K`)
    const ranked = (s.heads as (Head & {mean_kl: number})[]).map(({layer, head}) => ({layer, head}))
    if (top > ranked.length) throw new HeadNameError(`${where}: --top ${top} but the ships summary ranks ${ranked.length} heads`)
    // summary.json lists heads ranked (largest mean KL first), as src/science/ships.ts writes them
    return {source: 'ships', heads: ranked.slice(0, top)}
  }
  throw new HeadNameError(`${where}: neither a search summary ("group") nor a ships summary ("heads")`)
}

/** A head outside the model, named with the model's layers and heads. */
export function checkHeadInModel(h: Head, geometry: Geometry, model: string, what = 'head'): void {
  if (h.layer >= geometry.numLayers || h.head >= geometry.numHeads) {
    throw new HeadNameError(
      `${what} ${formatHead(h)} is out of range for model ${model}: it has ${geometry.numLayers} layers (L0..L${geometry.numLayers - 1}) ` +
        `and ${geometry.numHeads} heads per layer (H0..H${geometry.numHeads - 1})`,
    )
  }
}

export function formatHeads(heads: readonly Head[]): string {
  return heads.map(formatHead).join(',')
}

/** Check a selection against the model and turn it into concrete heads. */
export function resolveHeads(selection: HeadSelection, geometry: Geometry, model: string): ResolvedHeads {
  switch (selection.kind) {
    case 'none':
      return {heads: [], label: 'none (clean model only)'}
    case 'list':
      for (const h of selection.heads) checkHeadInModel(h, geometry, model)
      return {heads: selection.heads, label: formatHeads(selection.heads)}
    case 'from':
      for (const h of selection.heads) checkHeadInModel(h, geometry, model, `head (from ${selection.dir})`)
      return {
        heads: selection.heads,
        label: `${formatHeads(selection.heads)} (${selection.source === 'ships' ? `top-${selection.top} by mean KL of the ships run` : 'group of the search run'} ${selection.dir})`,
      }
    case 'job':
      throw new HeadNameError(`heads from job ${selection.job}: only a sweep run can read another job's result`)
    case 'random': {
      for (const h of selection.avoid) checkHeadInModel(h, geometry, model, '--avoid head')
      const avoided = new Set(selection.avoid.map(formatHead))
      const pool = allHeads(geometry).filter((h) => !avoided.has(formatHead(h)))
      if (selection.k > pool.length) {
        throw new HeadNameError(
          `--heads random:${selection.k}: model ${model} has only ${pool.length} heads to draw from (${geometry.numLayers} layers x ${geometry.numHeads} heads${avoided.size ? `, ${avoided.size} avoided` : ''})`,
        )
      }
      const heads = sample(pool, selection.k, selection.seed)
      const avoid = selection.avoid.length ? ` avoiding ${formatHeads(selection.avoid)}` : ''
      return {heads, label: `random:${selection.k} seed ${selection.seed}${avoid}: ${formatHeads(heads)}`}
    }
  }
}
