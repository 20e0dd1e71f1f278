/**
 * What every command shares: progress lines on stderr (stdout stays for the result, or the JSON
 * with --json), and errors turned into `this.error(message, {exit})` — exit 2 for bad arguments
 * or configuration (reported before any work starts), 1 for failures while working.
 */
import {existsSync, statSync} from 'node:fs'
import {resolve} from 'node:path'

import {Command, Flags} from '@oclif/core'

import {ConfigError} from '../config/fields.js'
import {DatasetError} from '../data/datasets.js'
import {ModelError} from '../models.js'
import {HeadNameError} from '../science/heads.js'
import {SidecarError} from '../sidecar/client.js'
import {CredentialsError} from '../sidecar/credentials.js'
import {SidecarStartError} from '../sidecar/process.js'
import {Progress} from './progress.js'

export const EXIT_USAGE = 2
export const EXIT_FAILURE = 1

/** A command line that cannot work, found before any work starts (exit 2). */
export class UsageError extends Error {
  override name = 'UsageError'
}

export abstract class SaharaCommand extends Command {
  static override enableJsonFlag = true
  static override baseFlags = {
    quiet: Flags.boolean({description: 'no progress lines on stderr', default: false}),
  }

  protected quiet = false
  private bar: Progress | undefined

  /** A progress line on stderr (kept with --json, so stdout stays machine-readable); above the bar on a terminal. */
  protected progress(message: string): void {
    if (!this.quiet) this.progressBar().log(message)
  }

  /**
   * Units done of total, for RunContext.progress: a bar on a terminal (stderr), a plain line every
   * 10 s otherwise (src/cli/progress.ts); nothing with --quiet.
   */
  protected readonly advance = (done: number, total: number, what = '', unit?: string): void => {
    if (!this.quiet) this.progressBar().update(done, total, what, unit)
  }

  private progressBar(): Progress {
    this.bar ??= new Progress()
    return this.bar
  }

  /** Results go to stdout: take the bar off stderr's line first. */
  override log(message?: string, ...args: unknown[]): void {
    this.bar?.finish()
    super.log(message, ...args)
  }

  protected override logJson(json: unknown): void {
    this.bar?.finish()
    super.logJson(json)
  }

  /** oclif calls this after run(), on success and on error: no bar is left on the screen. */
  protected override async finally(error: Error | undefined): Promise<unknown> {
    this.bar?.finish()
    return super.finally(error)
  }

  /** With --json oclif prints the error and exits 1 whatever `exit` said; keep the code. */
  protected override async catch(error: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    this.bar?.finish()
    if (this.jsonEnabled()) process.exitCode = error.oclif?.exit ?? error.exitCode ?? 1
    return super.catch(error)
  }

  /** The output folder, resolved; refused before a sidecar starts when a file is in its place. */
  protected outputFolder(path: string): string {
    const folder = resolve(path)
    if (existsSync(folder) && !statSync(folder).isDirectory()) this.error(`--out ${path}: ${folder} exists and is not a folder`, {exit: EXIT_USAGE})
    return folder
  }

  protected fail(error: unknown): never {
    const usage = error instanceof UsageError || error instanceof ConfigError || error instanceof DatasetError || error instanceof ModelError || error instanceof HeadNameError || error instanceof CredentialsError
    if (usage) this.error(error.message, {exit: EXIT_USAGE})
    if (error instanceof SidecarError || error instanceof SidecarStartError) this.error(error.message, {exit: EXIT_FAILURE})
    throw error
  }
}
