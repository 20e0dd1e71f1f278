import {Flags} from '@oclif/core'

import {SaharaCommand} from '../../cli/base.js'
import {defaultStateDir} from '../../paths.js'
import {clearState, readState, stopPid} from '../../sidecar/process.js'

export default class SidecarStop extends SaharaCommand {
  static override description = 'Stop the sidecar recorded by `sahara sidecar start` (SIGTERM, then SIGKILL after a grace period)'
  static override examples = ['<%= config.bin %> sidecar stop']

  static override flags = {
    'state-dir': Flags.string({description: 'where the state file is', default: defaultStateDir}),
    grace: Flags.integer({description: 'seconds to wait after SIGTERM before SIGKILL', default: 8, min: 0}),
  }

  async run(): Promise<{stopped: boolean; pid?: number}> {
    const {flags} = await this.parse(SidecarStop)
    this.quiet = flags.quiet
    const state = readState(flags['state-dir'])
    if (!state) {
      this.log('no sidecar recorded')
      return {stopped: false}
    }

    const stopped = await stopPid(state.pid, flags.grace * 1000)
    clearState(flags['state-dir'])
    this.log(stopped ? `stopped sidecar pid ${state.pid}` : `sidecar pid ${state.pid} was not running; record cleared`)
    return {stopped, pid: state.pid}
  }
}
