import {Flags} from '@oclif/core'
import {existsSync, readFileSync, statSync} from 'node:fs'
import {resolve} from 'node:path'

import {SaharaCommand} from '../cli/base.js'
import {modelFlag} from '../cli/ablation-flags.js'
import {sidecarFlags, withSidecar} from '../cli/sidecar-session.js'
import {METHODS, type Method} from '../jobs/ships.js'
import {ModelError, type ResolvedModel, resolveModel} from '../models.js'
import {parseHeadsOption, resolveHeads} from '../science/head-sets.js'
import type {Head} from '../science/heads.js'
import {
  ConfigShapeError,
  type HeadEditShape,
  type Modification,
  type ParameterTotal,
  formatPercent,
  headEditFromFacts,
  modification,
  shapeFromConfig,
  totalParameters,
} from '../science/params.js'

export interface ParamsResult extends Modification {
  model: string
  /** config: counted from config.json; sidecar: the sidecar's Describe (its named tensors) */
  source: 'config' | 'sidecar'
  source_path: string
  family: string
  num_layers: number
  num_heads: number
  num_kv_heads: number
  head_dim: number
  hidden_size: number
  q_bias: boolean
  head_names: string[]
  heads_label: string
  percent_text: string
  /** how the model's total was obtained */
  total_counted: string
  breakdown?: ParameterTotal['breakdown']
  note?: string
}

export default class Params extends SaharaCommand {
  static override description = `The exact number of parameters an ablation of a head set modifies (METHOD.md, "Parameter-modification
accounting"), against the model's total: UA = the head's d_h rows of W_q (+ its q bias entries) = d*d_h per head; SC = the
head's d_h columns of W_o = d*d_h (o bias untouched); mean = counted like UA (the head's query is rewritten).
From config.json alone when the model is a local directory (or --config FILE); from the sidecar's Describe with --describe
(a local sidecar) or --endpoint.`

  static override examples = [
    '<%= config.bin %> params --model organism --heads L1H2,L2H0 --method ua --json',
    '<%= config.bin %> params --config test/fixtures/configs/llama-2-7b.json --heads L2H26',
    '<%= config.bin %> params --model ./my-model --heads L2H26,L3H8 --method sc --describe',
  ]

  static override flags = {
    model: modelFlag,
    config: Flags.string({description: 'a config.json to count from (instead of --model)', exclusive: ['endpoint', 'describe']}),
    heads: Flags.string({description: 'heads ablated together: L2H26,L3H8, or random:K with --seed', required: true}),
    seed: Flags.integer({description: 'with --heads random:K', min: 0}),
    method: Flags.string({description: 'ua, sc or mean', options: [...METHODS], default: 'ua'}),
    describe: Flags.boolean({description: 'start a local sidecar and count its tensors (Describe) instead of reading config.json', default: false}),
    ...sidecarFlags,
  }

  async run(): Promise<ParamsResult> {
    const {flags} = await this.parse(Params)
    this.quiet = flags.quiet
    const method = flags.method as Method
    let result: ParamsResult
    try {
      const selection = parseHeadsOption(flags.heads, {seed: flags.seed})
      const useSidecar = flags.endpoint !== undefined || flags.describe
      let model: ResolvedModel | undefined
      let configFile: string | undefined
      if (flags.config !== undefined) {
        configFile = resolve(flags.config)
        if (!existsSync(configFile) || !statSync(configFile).isFile()) throw new ModelError(`--config ${flags.config}: no such file`)
      } else {
        model = resolveModel(flags.model, process.cwd(), {remote: flags.endpoint !== undefined})
        if (!useSidecar) {
          if (model.kind === 'hub') throw new ModelError(`model ${model.name} is a hub id: give --describe (a local sidecar counts its tensors) or --config FILE`)
          configFile = resolve(model.source, 'config.json')
        }
      }

      if (configFile !== undefined) {
        let config: Record<string, unknown>
        try {
          config = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>
        } catch (error) {
          throw new ModelError(`${configFile}: not valid JSON (${(error as Error).message})`)
        }
        const shape = shapeFromConfig(config, configFile)
        const name = model?.name ?? flags.config!
        const {heads, label} = resolveHeads(selection, {numLayers: shape.numLayers, numHeads: shape.numHeads}, name)
        const total = totalParameters(shape)
        result = this.result(method, heads, label, {hiddenSize: shape.hiddenSize, headDim: shape.headDim, qBias: shape.qkvBias}, total.total, {
          model: name,
          source: 'config',
          source_path: configFile,
          family: shape.family,
          num_layers: shape.numLayers,
          num_heads: shape.numHeads,
          num_kv_heads: shape.numKvHeads,
          total_counted:
            'from config.json: embeddings, per layer q/k/v/o projections (with their biases where the family has them), ' +
            `MLP gate/up/down, two RMSNorms${shape.qkNorm ? ', q_norm and k_norm' : ''}; the final norm; lm_head ${shape.tieWordEmbeddings ? 'tied to the embeddings (counted once)' : 'untied'}`,
          breakdown: total.breakdown,
          note: shape.qkNorm ? 'queries are normalised per head (q_norm): UA acts after the norm, so it is not literally a W_q row edit; the count is that of the rows it nominally targets' : undefined,
        })
      } else {
        const resolved = model!
        result = await withSidecar(resolved, {...flags, log: (m) => this.progress(m)}, async (client) => {
          const facts = await client.describe()
          const {heads, label} = resolveHeads(selection, {numLayers: facts.numLayers, numHeads: facts.numHeads}, resolved.name)
          return this.result(method, heads, label, headEditFromFacts(facts), facts.totalParameters, {
            model: resolved.name,
            source: 'sidecar',
            source_path: facts.model,
            family: facts.family,
            num_layers: facts.numLayers,
            num_heads: facts.numHeads,
            num_kv_heads: facts.numKvHeads,
            total_counted: `the sidecar's Describe: ${facts.parameters.length} named parameter tensors, tied ones counted once`,
            note: facts.queriesNormalised
              ? 'queries are normalised per head (q_norm): UA acts after the norm, so it is not literally a W_q row edit; the count is that of the rows it nominally targets'
              : undefined,
          })
        })
      }
    } catch (error) {
      if (error instanceof ConfigShapeError) this.error(error.message, {exit: 2})
      this.fail(error)
    }

    this.log(`${result.model} (${result.family}, ${result.source === 'config' ? 'from config.json' : 'from the sidecar'}): heads ${result.heads_label}, ${result.method}`)
    this.log(`modified   ${result.modified.toLocaleString('en-US')} parameters (${result.per_head.toLocaleString('en-US')} per head x ${result.n_heads})`)
    this.log(`total      ${result.total.toLocaleString('en-US')}`)
    this.log(`share      ${result.percent_text} (fraction ${result.fraction.toExponential(4)})`)
    this.log(`counted    ${result.counted}`)
    this.log(`total of   ${result.total_counted}`)
    if (result.note) this.log(`note       ${result.note}`)
    return result
  }

  private result(
    method: Method,
    heads: Head[],
    label: string,
    edit: HeadEditShape,
    total: number,
    rest: Omit<ParamsResult, keyof Modification | 'head_dim' | 'hidden_size' | 'q_bias' | 'head_names' | 'heads_label' | 'percent_text'>,
  ): ParamsResult {
    const m = modification(method, heads, edit, total)
    const out: ParamsResult = {
      ...rest,
      ...m,
      head_dim: edit.headDim,
      hidden_size: edit.hiddenSize,
      q_bias: edit.qBias,
      head_names: heads.map((h) => `L${h.layer}H${h.head}`),
      heads_label: label,
      percent_text: formatPercent(m.percent),
    }
    if (out.note === undefined) delete out.note
    if (out.breakdown === undefined) delete out.breakdown
    return out
  }
}
