/**
 * Parameter-modification accounting (METHOD.md): how many weights an ablation of a head set
 * changes, against the model's total. Pure, no I/O.
 *
 * Per ablated head (d = hidden size, d_h = head size):
 * - UA: the head's d_h rows of W_q (q_proj.weight, [H*d_h, d]; in a fused qkv_proj, as in Phi-3,
 *   the first H*d_h rows are W_q) = d*d_h, plus its d_h entries of the q bias where the family
 *   has one (qwen2; llama/qwen3 with attention_bias).
 * - SC: the head's d_h columns of W_o (o_proj.weight, [d, H*d_h]) = d*d_h. The o bias (if any)
 *   is added after the heads are summed and is not touched.
 * - mean: the head's query is replaced by the layer's mean query. That rewrites one query head,
 *   so it is counted like UA: the head's d_h rows of W_q (+ q bias). (As a weight edit, the new
 *   rows are the mean of all H heads' rows; those other rows are read, not changed.)
 * With GQA only the query head is touched, never the shared K/V head.
 *
 * The model total is computed from a Hugging Face config.json for Llama-like families (llama,
 * mistral, qwen2, qwen3), or taken from the sidecar's Describe (every named parameter tensor,
 * tied embeddings once).
 */
import type {Head} from './heads.js'

export type ParamMethod = 'ua' | 'sc' | 'mean'

/** What the counting needs to know about a model. */
export interface ModelShape {
  family: string
  hiddenSize: number
  numLayers: number
  numHeads: number
  numKvHeads: number
  headDim: number
  intermediateSize: number
  vocabSize: number
  tieWordEmbeddings: boolean
  /** biases of q_proj, k_proj, v_proj */
  qkvBias: boolean
  oBias: boolean
  mlpBias: boolean
  /** per-head RMSNorm on queries and keys (qwen3): q_norm and k_norm weights of d_h each, per layer */
  qkNorm: boolean
}

export class ConfigShapeError extends Error {
  override name = 'ConfigShapeError'
}

export const CONFIG_FAMILIES = ['llama', 'mistral', 'qwen2', 'qwen3'] as const

function positiveInt(config: Record<string, unknown>, key: string, where: string, fallback?: number): number {
  const value = config[key] ?? fallback
  if (!(typeof value === 'number' && Number.isInteger(value) && value > 0)) {
    throw new ConfigShapeError(`${where}: ${key} must be a positive integer, got ${JSON.stringify(config[key])}`)
  }
  return value
}

/** The shape of a Llama-like model from its config.json (parsed). `where` names the file in errors. */
export function shapeFromConfig(config: Record<string, unknown>, where = 'config.json'): ModelShape {
  const family = String(config.model_type ?? '')
  if (!(CONFIG_FAMILIES as readonly string[]).includes(family)) {
    throw new ConfigShapeError(
      `${where}: model_type ${JSON.stringify(config.model_type)} is not one counted from a config (${CONFIG_FAMILIES.join(', ')}); ` +
        'give a sidecar (--describe or --endpoint) to count its tensors instead',
    )
  }
  const hiddenSize = positiveInt(config, 'hidden_size', where)
  const numHeads = positiveInt(config, 'num_attention_heads', where)
  const headDimDefault = hiddenSize % numHeads === 0 ? hiddenSize / numHeads : undefined
  const attentionBias = config.attention_bias === true
  return {
    family,
    hiddenSize,
    numLayers: positiveInt(config, 'num_hidden_layers', where),
    numHeads,
    numKvHeads: positiveInt(config, 'num_key_value_heads', where, numHeads),
    headDim: config.head_dim === null ? positiveInt({}, 'head_dim', where, headDimDefault) : positiveInt(config, 'head_dim', where, headDimDefault),
    intermediateSize: positiveInt(config, 'intermediate_size', where),
    vocabSize: positiveInt(config, 'vocab_size', where),
    // transformers' default for these families is tie_word_embeddings = false
    tieWordEmbeddings: config.tie_word_embeddings === true,
    qkvBias: family === 'qwen2' ? true : attentionBias,
    oBias: family === 'qwen2' ? false : attentionBias,
    mlpBias: config.mlp_bias === true,
    qkNorm: family === 'qwen3',
  }
}

export interface ParameterTotal {
  total: number
  breakdown: {embeddings: number; attention: number; mlp: number; norms: number; lm_head: number}
}

/** Every parameter of the model, by the Hugging Face module layout of Llama-like families. */
export function totalParameters(s: ModelShape): ParameterTotal {
  const d = s.hiddenSize
  const q = s.numHeads * s.headDim
  const kv = s.numKvHeads * s.headDim
  const attentionPerLayer =
    d * q + d * kv * 2 + q * d + (s.qkvBias ? q + 2 * kv : 0) + (s.oBias ? d : 0) + (s.qkNorm ? 2 * s.headDim : 0)
  const mlpPerLayer = 3 * d * s.intermediateSize + (s.mlpBias ? 2 * s.intermediateSize + d : 0)
  const embeddings = s.vocabSize * d
  const breakdown = {
    embeddings,
    attention: attentionPerLayer * s.numLayers,
    mlp: mlpPerLayer * s.numLayers,
    norms: 2 * d * s.numLayers + d,
    lm_head: s.tieWordEmbeddings ? 0 : embeddings,
  }
  const total = Object.values(breakdown).reduce((a, b) => a + b, 0)
  return {total, breakdown}
}

/** What one ablated head's edit needs: d, d_h and whether the query projection has a bias. */
export interface HeadEditShape {
  hiddenSize: number
  headDim: number
  qBias: boolean
  /** the tensor holding W_q: q_proj (default), or a fused qkv_proj whose first H*d_h rows are W_q (Phi-3) */
  queryProjection?: 'q_proj' | 'qkv_proj'
}

/** The edit shape from a sidecar's Describe facts; the parameter names show a fused qkv_proj. */
export function headEditFromFacts(facts: {
  hiddenSize: number
  headDim: number
  qProjBias: boolean
  parameters: readonly {name: string}[]
}): HeadEditShape {
  const fused = facts.parameters.some((p) => p.name.endsWith('.qkv_proj.weight'))
  return {hiddenSize: facts.hiddenSize, headDim: facts.headDim, qBias: facts.qProjBias, queryProjection: fused ? 'qkv_proj' : 'q_proj'}
}

export interface Modification {
  method: ParamMethod
  n_heads: number
  per_head: number
  modified: number
  total: number
  fraction: number
  /** the fraction in percent */
  percent: number
  /** what was counted, in words */
  counted: string
}

export function perHeadCount(method: ParamMethod, s: HeadEditShape): {count: number; counted: string} {
  const {hiddenSize: d, headDim: dh} = s
  switch (method) {
    case 'ua':
    case 'mean': {
      const bias = s.qBias ? dh : 0
      const projection = s.queryProjection ?? 'q_proj'
      const weight = projection === 'q_proj' ? 'q_proj.weight' : `${projection}.weight, its query part`
      const biasText = bias ? ` + its ${dh} ${projection}.bias entries` : ' (no q bias)'
      const what =
        method === 'ua'
          ? `UA: the head's ${dh} rows of W_q (${weight}) = ${d}*${dh}${biasText}`
          : `mean: the head's query is replaced by the layer's mean query, counted as the head's ${dh} rows of W_q = ${d}*${dh}${biasText}, like UA`
      return {count: d * dh + bias, counted: what}
    }
    case 'sc':
      return {count: d * dh, counted: `SC: the head's ${dh} columns of W_o (o_proj.weight) = ${d}*${dh}; the o_proj bias, if any, is not touched`}
  }
}

/** Parameters modified by ablating `heads` (each the same way), against the model's total. */
export function modification(method: ParamMethod, heads: readonly Head[], edit: HeadEditShape, total: number): Modification {
  if (!(total > 0)) throw new RangeError(`model total must be positive, got ${total}`)
  const {count, counted} = perHeadCount(method, edit)
  const modified = count * heads.length
  const fraction = modified / total
  return {method, n_heads: heads.length, per_head: count, modified, total, fraction, percent: fraction * 100, counted: `${counted}, per head; x ${heads.length} heads`}
}

/** `0.0078%`: four decimals, as the paper quotes shares (more, to two significant digits, below 0.001%). */
export function formatPercent(percent: number): string {
  if (percent === 0) return '0%'
  if (percent >= 0.001) return `${percent.toFixed(4)}%`
  return `${percent.toFixed(Math.min(20, 1 - Math.floor(Math.log10(percent))))}%`
}
