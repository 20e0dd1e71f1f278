import {Flags} from '@oclif/core'

import {SaharaCommand} from '../cli/base.js'
import {sidecarFlags, withSidecar} from '../cli/sidecar-session.js'
import {type ResolvedModel, resolveModel} from '../models.js'
import {type DescribeResponse, dtypeName} from '../sidecar/client.js'

export default class Describe extends SaharaCommand {
  static override description = 'Show the facts of a model as the sidecar loads it: layers, heads, sizes, parameter counts, tokenizer'
  static override examples = [
    '<%= config.bin %> describe --model organism',
    '<%= config.bin %> describe --model ./my-model --json',
    '<%= config.bin %> describe --model organism --endpoint 127.0.0.1:50051',
  ]

  static override flags = {
    model: Flags.string({char: 'm', description: 'organism, organism-natural, a local model directory or a hub id', default: 'organism'}),
    ...sidecarFlags,
  }

  async run(): Promise<DescribeResponse & {dtypeName: string}> {
    const {flags} = await this.parse(Describe)
    this.quiet = flags.quiet
    let model: ResolvedModel
    try {
      model = resolveModel(flags.model, process.cwd(), {remote: flags.endpoint !== undefined})
    } catch (error) {
      this.fail(error)
    }

    try {
      const facts = await withSidecar(model, {...flags, log: (m) => this.progress(m)}, (client) => client.describe())
      const dtype = dtypeName(facts.dtype)
      this.log(`model        ${facts.model} (${facts.family})`)
      this.log(`layers       ${facts.numLayers}`)
      this.log(`heads        ${facts.numHeads} query, ${facts.numKvHeads} key/value, head_dim ${facts.headDim}`)
      this.log(`hidden       ${facts.hiddenSize}`)
      this.log(`vocab        ${facts.vocabSize}`)
      this.log(`parameters   ${facts.totalParameters.toLocaleString('en-US')} (${facts.parameters.length} tensors)`)
      this.log(`dtype        ${dtype} on ${facts.device}`)
      this.log(`chat         ${facts.hasChatTemplate ? 'has a chat template' : 'no chat template'}; bos ${JSON.stringify(facts.bosToken)}, eos ${JSON.stringify(facts.eosToken)}`)
      this.log(`versions     sidecar ${facts.sidecarVersion}, torch ${facts.torchVersion}, transformers ${facts.transformersVersion}`)
      return {...facts, dtypeName: dtype}
    } catch (error) {
      this.fail(error)
    }
  }
}
