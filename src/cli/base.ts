/**
 * What every command shares: progress lines on stderr (stdout stays for the result, or the JSON
 * with --json), and errors turned into `this.error(message, {exit})` — exit 2 for bad arguments
 * or configuration (reported before any work starts), 1 for failures while working.
 */
import {Command, Flags} from '@oclif/core'

import {ConfigError} from '../config/fields.js'
import {DatasetError} from '../data/datasets.js'
import {ModelError} from '../models.js'
import {HeadNameError} from '../science/heads.js'
import {SidecarError} from '../sidecar/client.js'
import {CredentialsError} from '../sidecar/credentials.js'
import {SidecarStartError} from '../sidecar/process.js'

export const EXIT_USAGE = 2
export const EXIT_FAILURE = 1

export abstract class SaharaCommand extends Command {
  static override enableJsonFlag = true
  static override baseFlags = {
    quiet: Flags.boolean({description: 'no progress lines on stderr', default: false}),
  }

  protected quiet = false

  /** A progress line on stderr (kept with --json, so stdout stays machine-readable). */
  protected progress(message: string): void {
    if (!this.quiet) process.stderr.write(`${message}\n`)
  }

  /** With --json oclif prints the error and exits 1 whatever `exit` said; keep the code. */
  protected override async catch(error: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    if (this.jsonEnabled()) process.exitCode = error.oclif?.exit ?? error.exitCode ?? 1
    return super.catch(error)
  }

  protected fail(error: unknown): never {
    const usage = error instanceof ConfigError || error instanceof DatasetError || error instanceof ModelError || error instanceof HeadNameError || error instanceof CredentialsError
    if (usage) this.error(error.message, {exit: EXIT_USAGE})
    if (error instanceof SidecarError || error instanceof SidecarStartError) this.error(error.message, {exit: EXIT_FAILURE})
    throw error
  }
}
