/**
 * Flags shared by the commands that ablate heads on a prompt set (ships, asr, ...): the model,
 * the dataset, the ablation method and strength, the prompt template; and reading them.
 */
import {Flags} from '@oclif/core'

import {type Dataset, loadDataset} from '../data/datasets.js'
import {ENGINES, type EngineName, type EngineOptions, type Prefilter, parseMemoryBudget, parsePrefilter} from '../jobs/engine.js'
import {METHODS, TEMPLATES} from '../jobs/ships.js'
import {type ResolvedModel, resolveModel} from '../models.js'

export const modelFlag = Flags.string({char: 'm', description: 'organism, organism-natural, a local model directory or a hub id', default: 'organism'})

export const datasetFlag = Flags.string({
  char: 'd',
  description: 'prompt file (.json, .jsonl, .csv, .txt) or a built-in name (jailbreakbench, advbench, harmful_val, ...)',
  required: true,
})

export const ablationFlags = {
  method: Flags.string({description: 'ablation: ua (query x eps), sc (head output x eps), mean (query = layer mean)', options: [...METHODS], default: 'ua'}),
  eps: Flags.string({description: 'ablation strength, a positive number', default: '1e-5'}),
  template: Flags.string({description: 'prompt format: paper ("## Query:{q}\\n## Answer:"), direct (raw), chat (the tokenizer\'s)', options: [...TEMPLATES], default: 'paper'}),
}

/** The KL over a support set (ships, search --score kl): ForwardRequest.logprob_support. `scope` ends the description. */
export const logprobSupportFlag = (scope = '') =>
  Flags.integer({
    description: `K > 0: the KL over each prompt's K most likely clean tokens and the rest of the mass (a lower bound of the full KL, (K+1)/vocab of the data); 0 = every token${scope}`,
    default: 0,
    min: 0,
  })

/** How the sidecar computes the ablated forwards (ships, search). */
export const engineFlags = {
  engine: Flags.string({
    description: 'fast: many ablations per forward, each resumed from its clean row where it first acts, memory-budget batches; naive: one unpadded forward per (prompt, head), as the authors\' code (for comparison)',
    options: [...ENGINES],
    default: 'fast',
  }),
  'memory-budget': Flags.string({description: 'activation memory one forward may use, in GiB, or auto (free device memory, or a CPU default)', default: 'auto', helpValue: 'GIB'}),
  prefilter: Flags.string({
    description: 'atp:K: rank every head by a first-order attribution estimate (one forward + backward), then score only the top K exactly (UA and SC)',
    helpValue: 'atp:K',
  }),
}

/** --engine, --memory-budget and --prefilter read, or a message for the usage error. */
export function parseEngineFlags(flags: {engine: string; 'memory-budget': string; prefilter?: string; method?: string}): {engineOptions: EngineOptions; prefilter?: Prefilter} | string {
  const memoryBudgetGib = parseMemoryBudget(flags['memory-budget'])
  if (typeof memoryBudgetGib === 'string') return memoryBudgetGib
  const engineOptions = {engine: flags.engine as EngineName, memoryBudgetGib}
  if (flags.prefilter === undefined) return {engineOptions}
  const prefilter = parsePrefilter(flags.prefilter)
  if (typeof prefilter === 'string') return prefilter
  if (flags.method === 'mean') return '--prefilter needs --method ua or sc (mean ablation has no eps to differentiate)'
  return {engineOptions, prefilter}
}

/** --eps as a positive finite number, or a message for the usage error. */
export function parseEps(text: string): number | string {
  const eps = Number(text)
  return Number.isFinite(eps) && eps > 0 ? eps : `--eps must be a positive finite number, got ${JSON.stringify(text)}`
}

/** --smoothing as a finite number >= 0, or a message for the usage error. */
export function parseSmoothing(text: string): number | string {
  const smoothing = Number(text)
  return Number.isFinite(smoothing) && smoothing >= 0 ? smoothing : `--smoothing must be a finite number >= 0, got ${JSON.stringify(text)}`
}

/** The model (remote when an endpoint serves it) and the dataset; throws ModelError / DatasetError. */
export function resolveModelAndDataset(flags: {model: string; dataset: string; endpoint?: string}): {model: ResolvedModel; dataset: Dataset} {
  const model = resolveModel(flags.model, process.cwd(), {remote: flags.endpoint !== undefined})
  const dataset = loadDataset(flags.dataset)
  return {model, dataset}
}
