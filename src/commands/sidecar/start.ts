import {Flags} from '@oclif/core'

import {SaharaCommand} from '../../cli/base.js'
import {resolveModel} from '../../models.js'
import {defaultStateDir} from '../../paths.js'
import {loadToken} from '../../sidecar/credentials.js'
import {type SidecarState, startDetached} from '../../sidecar/process.js'

export default class SidecarStart extends SaharaCommand {
  static override description = `Start a local sidecar in the background and record it (pid, port, model) in <state-dir>/sidecar.json.
Other commands use it with --endpoint 127.0.0.1:<port>; \`sahara sidecar stop\` stops it.`

  static override examples = [
    '<%= config.bin %> sidecar start --model organism',
    '<%= config.bin %> sidecar start --model ./my-model --device cuda --dtype bfloat16 --port 50051',
  ]

  static override flags = {
    model: Flags.string({char: 'm', description: 'organism, organism-natural, a local model directory or a hub id', default: 'organism'}),
    port: Flags.integer({description: 'port on 127.0.0.1 (0 = a free one)', default: 0, min: 0, max: 65_535}),
    device: Flags.string({description: 'device (auto: cuda when available)', options: ['auto', 'cpu', 'cuda']}),
    dtype: Flags.string({description: 'weights dtype', options: ['auto', 'float32', 'bfloat16', 'float16']}),
    'state-dir': Flags.string({description: 'where the state file and logs go', default: defaultStateDir}),
    'token-file': Flags.string({
      description: 'require this bearer token on every call (else SAHARA_TOKEN_FILE or SAHARA_TOKEN when set; clients send the same)',
      helpValue: 'PATH',
    }),
  }

  async run(): Promise<SidecarState & {endpoint: string}> {
    const {flags} = await this.parse(SidecarStart)
    this.quiet = flags.quiet
    try {
      const model = resolveModel(flags.model)
      this.progress(`starting a sidecar for ${model.name} ...`)
      const token = loadToken(flags['token-file'])
      const state = await startDetached({model: model.source, device: flags.device, dtype: flags.dtype, port: flags.port, stateDir: flags['state-dir'], token})
      const endpoint = `${state.host}:${state.port}`
      this.log(`sidecar running: pid ${state.pid}, endpoint ${endpoint}, model ${state.model}`)
      this.log(`log: ${state.log}`)
      if (token !== undefined) this.log('every call but health needs the token (clients: SAHARA_TOKEN or --token-file)')
      return {...state, endpoint}
    } catch (error) {
      this.fail(error)
    }
  }
}
