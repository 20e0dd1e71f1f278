/**
 * A pool of sidecars for a run: the endpoints given (`--endpoint a:1,b:2`, `dns:///name:port`,
 * or a sweep's `endpoints:`), health-checked before any work; or, without endpoints, sidecars
 * this command starts locally for the model (`--sidecars N`, default 1) and stops when done.
 * Every endpoint must serve the same model (checked with Describe).
 */
import {Flags} from '@oclif/core'

import type {ResolvedModel} from '../models.js'
import {type ResolvedEndpoint, isHostFailure, parseEndpoints, resolveEndpoints, sidecarEndpoint} from '../orchestration/endpoints.js'
import {EndpointPool} from '../orchestration/pool.js'
import {type ClientOptions, SidecarClient} from '../sidecar/client.js'
import {loadCredentials} from '../sidecar/credentials.js'
import {type RunningSidecar, startSidecar} from '../sidecar/process.js'
import type {SessionOptions} from './sidecar-session.js'

export const poolFlags = {
  sidecars: Flags.integer({description: 'without --endpoint: how many local sidecars to start (each loads the model)', default: 1, min: 1}),
  concurrency: Flags.integer({description: 'work units in flight per sidecar', default: 2, min: 1}),
  'unit-timeout': Flags.integer({description: 'seconds one work unit may take before its host counts as failed and the unit is re-queued', default: 1800, min: 1}),
}

export interface PoolSessionOptions extends SessionOptions {
  /** Endpoints from the command line or the sweep (each may hold several, comma-separated). */
  endpoints?: string[]
  sidecars?: number
  concurrency?: number
  unitTimeoutS?: number
}

export async function withPool<T>(model: ResolvedModel, options: PoolSessionOptions, fn: (pool: EndpointPool<SidecarClient>) => Promise<T>): Promise<T> {
  // TLS and the token for remote endpoints; local sidecars (loopback, no TLS) get the token only.
  const credentials = loadCredentials(options)
  const remote = Boolean(options.endpoints && options.endpoints.length > 0)
  const clientOptions: ClientOptions = {
    streamDeadlineMs: (options.unitTimeoutS ?? 1800) * 1000,
    credentials: remote ? credentials : credentials.token === undefined ? {} : {token: credentials.token},
  }
  const started: RunningSidecar[] = []
  let addresses: ResolvedEndpoint[]
  if (options.endpoints && options.endpoints.length > 0) {
    addresses = await resolveEndpoints(parseEndpoints(options.endpoints))
  } else {
    const n = options.sidecars ?? 1
    options.log(`starting ${n === 1 ? 'a sidecar' : `${n} sidecars`} for ${model.name} ...`)
    const results = await Promise.allSettled(
      Array.from({length: n}, () =>
        startSidecar({
          model: model.source,
          device: options.device,
          dtype: options.dtype,
          token: credentials.token,
          onLog: options.verbose ? (line) => process.stderr.write(`[sidecar] ${line}\n`) : undefined,
        }),
      ),
    )
    for (const r of results) if (r.status === 'fulfilled') started.push(r.value)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) {
      await Promise.all(started.map((s) => s.stop()))
      throw failed.reason
    }

    addresses = started.map((s) => ({address: s.endpoint}))
  }

  // a pod behind dns:/// is reached by IP, but its certificate names the service: check that name
  const forEndpoint = (a: ResolvedEndpoint): ClientOptions => {
    const tls = clientOptions.credentials?.tls
    return tls && a.dnsName && !tls.serverName ? {...clientOptions, credentials: {...clientOptions.credentials, tls: {...tls, serverName: a.dnsName}}} : clientOptions
  }
  const clients = addresses.map((a) => new SidecarClient(a.address, forEndpoint(a)))
  const pool = new EndpointPool(
    clients.map((c) => sidecarEndpoint(c.endpoint, c)),
    {concurrency: options.concurrency, isHostFailure, warn: (m) => options.log(`warning: ${m}`)},
  )
  try {
    if (started.length > 0) await Promise.all(clients.map((c) => c.waitUntilServing(60_000)))
    await pool.checkAll()
    if (clients.length > 1) await sameModelEverywhere(clients)
    return await fn(pool)
  } finally {
    pool.close()
    for (const c of clients) c.close()
    await Promise.all(started.map((s) => s.stop()))
  }
}

/** Units are spread over the endpoints, so they must all serve one model (and the same weights' dtype). */
async function sameModelEverywhere(clients: SidecarClient[]): Promise<void> {
  const facts = await Promise.allSettled(clients.map((c) => c.describe()))
  const served = facts.flatMap((f, i) => (f.status === 'fulfilled' ? [{endpoint: clients[i].endpoint, model: f.value.model, dtype: f.value.dtype}] : []))
  const first = served[0]
  const other = served.find((s) => s.model !== first?.model || s.dtype !== first?.dtype)
  if (first && other) {
    throw new Error(
      `the endpoints serve different models: ${first.endpoint} serves ${first.model}, ${other.endpoint} serves ${other.model} ` +
        '(or another dtype); a run spreads its units over all endpoints, so give endpoints of one model',
    )
  }
}
