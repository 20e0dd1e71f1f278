import {Flags} from '@oclif/core'

import {SaharaCommand} from '../../cli/base.js'
import {defaultStateDir} from '../../paths.js'
import {SidecarClient} from '../../sidecar/client.js'
import {isAlive, readState} from '../../sidecar/process.js'

export interface SidecarStatus {
  running: boolean
  pid?: number
  endpoint?: string
  model?: string
  health?: string
  log?: string
}

export default class SidecarStatusCommand extends SaharaCommand {
  static override description = 'Show the sidecar recorded by `sahara sidecar start`: pid, endpoint, model and its gRPC health'
  static override examples = ['<%= config.bin %> sidecar status', '<%= config.bin %> sidecar status --json']

  static override flags = {
    'state-dir': Flags.string({description: 'where the state file is', default: defaultStateDir}),
  }

  async run(): Promise<SidecarStatus> {
    const {flags} = await this.parse(SidecarStatusCommand)
    this.quiet = flags.quiet
    const state = readState(flags['state-dir'])
    if (!state) {
      this.log('no sidecar recorded (start one with `sahara sidecar start`)')
      return {running: false}
    }

    const endpoint = `${state.host}:${state.port}`
    if (!isAlive(state.pid)) {
      this.log(`sidecar pid ${state.pid} (${endpoint}) is not running; \`sahara sidecar stop\` clears the record`)
      return {running: false, pid: state.pid, endpoint, model: state.model, log: state.log}
    }

    const client = new SidecarClient(endpoint, {unaryDeadlineMs: 5000})
    let health: string
    try {
      health = await client.healthCheck()
    } catch (error) {
      health = `unreachable: ${(error as Error).message}`
    } finally {
      client.close()
    }

    this.log(`sidecar pid ${state.pid}, endpoint ${endpoint}, model ${state.model}, health ${health}`)
    return {running: true, pid: state.pid, endpoint, model: state.model, health, log: state.log}
  }
}
