/**
 * The one rule every command follows: with --endpoint, talk to that sidecar; without, start a
 * local one for the model, use it, and stop it when done, also on error.
 *
 * A remote sidecar may want TLS (--tls-ca, and --tls-cert/--tls-key for mutual TLS) and a token
 * (SAHARA_TOKEN, SAHARA_TOKEN_FILE or --token-file; never a flag value): src/sidecar/credentials.ts.
 * A sidecar started here listens on loopback without TLS; it is given the token when there is one,
 * so that it checks the same token the client sends.
 */
import {Flags} from '@oclif/core'

import type {ResolvedModel} from '../models.js'
import {SidecarClient} from '../sidecar/client.js'
import {type CredentialFlags, loadCredentials} from '../sidecar/credentials.js'
import {startSidecar} from '../sidecar/process.js'
import {UsageError} from './base.js'

export const sidecarFlags = {
  endpoint: Flags.string({
    description: 'host:port of a running sidecar (e.g. from `sahara sidecar start`); without it a local sidecar is started and stopped',
    helpValue: 'HOST:PORT',
  }),
  device: Flags.string({description: 'device for a sidecar this command starts', options: ['auto', 'cpu', 'cuda']}),
  dtype: Flags.string({description: 'weights dtype for a sidecar this command starts', options: ['auto', 'float32', 'bfloat16', 'float16']}),
  verbose: Flags.boolean({description: 'forward the sidecar\'s log (stderr) to stderr', default: false}),
  'token-file': Flags.string({
    description: 'file holding the sidecar\'s bearer token (else SAHARA_TOKEN_FILE or SAHARA_TOKEN; never the token itself on the command line)',
    helpValue: 'PATH',
  }),
  'tls-ca': Flags.string({description: 'connect to --endpoint with TLS, trusting this CA (PEM)', helpValue: 'PATH'}),
  'tls-cert': Flags.string({description: 'client certificate (PEM) for a sidecar that requires one (mutual TLS); with --tls-key', helpValue: 'PATH', dependsOn: ['tls-ca', 'tls-key']}),
  'tls-key': Flags.string({description: 'the client certificate\'s private key (PEM)', helpValue: 'PATH', dependsOn: ['tls-ca', 'tls-cert']}),
  'tls-server-name': Flags.string({description: 'the name the sidecar\'s certificate carries, when not the endpoint\'s host', helpValue: 'NAME', dependsOn: ['tls-ca']}),
}

export interface SessionOptions extends CredentialFlags {
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
  if (options.endpoint?.includes(',')) {
    throw new UsageError(`--endpoint ${options.endpoint}: this command talks to one sidecar; \`sahara run\` spreads a sweep over several`)
  }

  const credentials = loadCredentials(options)
  if (options.endpoint) {
    const client = new SidecarClient(options.endpoint, {credentials})
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
    token: credentials.token,
    onLog: options.verbose ? (line) => process.stderr.write(`[sidecar] ${line}\n`) : undefined,
  })
  const client = new SidecarClient(sidecar.endpoint, {credentials: credentials.token === undefined ? {} : {token: credentials.token}})
  try {
    await client.waitUntilServing(60_000)
    return await fn(client)
  } finally {
    client.close()
    await sidecar.stop()
  }
}
