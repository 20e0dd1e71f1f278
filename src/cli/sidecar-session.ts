/**
 * The one rule every command follows: with --endpoint, talk to that sidecar; without, start a
 * local one for the model, use it, and stop it when done, also on error.
 */
import {Flags} from '@oclif/core'

import type {ResolvedModel} from '../models.js'
import {SidecarClient} from '../sidecar/client.js'
import {startSidecar} from '../sidecar/process.js'

export const sidecarFlags = {
  endpoint: Flags.string({
    description: 'host:port of a running sidecar (e.g. from `sahara sidecar start`); without it a local sidecar is started and stopped',
    helpValue: 'HOST:PORT',
  }),
  device: Flags.string({description: 'device for a sidecar this command starts', options: ['auto', 'cpu', 'cuda']}),
  dtype: Flags.string({description: 'weights dtype for a sidecar this command starts', options: ['auto', 'float32', 'bfloat16', 'float16']}),
  verbose: Flags.boolean({description: 'forward the sidecar\'s log (stderr) to stderr', default: false}),
}

export interface SessionOptions {
  endpoint?: string
  device?: string
  dtype?: string
  verbose?: boolean
  log: (message: string) => void
}

export async function withSidecar<T>(
  model: ResolvedModel,
  options: SessionOptions,
  fn: (client: SidecarClient) => Promise<T>,
): Promise<T> {
  if (options.endpoint) {
    const client = new SidecarClient(options.endpoint)
    try {
      return await fn(client)
    } finally {
      client.close()
    }
  }

  options.log(`starting a sidecar for ${model.name} ...`)
  const sidecar = await startSidecar({
    model: model.source,
    device: options.device,
    dtype: options.dtype,
    onLog: options.verbose ? (line) => process.stderr.write(`[sidecar] ${line}\n`) : undefined,
  })
  const client = new SidecarClient(sidecar.endpoint)
  try {
    await client.waitUntilServing(60_000)
    return await fn(client)
  } finally {
    client.close()
    await sidecar.stop()
  }
}
