/**
 * Where the sidecars are: `--endpoint` / `endpoints:` values, each `host:port`, `[v6]:port` or
 * `dns:///name:port` (every address the name resolves to, e.g. one per pod behind a Kubernetes
 * headless Service), comma-separated or as a list. Resolved to concrete host:port addresses when a
 * run starts; each becomes an Endpoint of the pool (src/orchestration/pool.ts) with a health check.
 */
import {lookup} from 'node:dns/promises'

import {SidecarClient, SidecarError} from '../sidecar/client.js'
import type {Endpoint} from './pool.js'

export class EndpointError extends Error {
  override name = 'EndpointError'
}

export type EndpointSpec = {kind: 'address'; address: string} | {kind: 'dns'; name: string; port: number; text: string}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/
const DNS = /^dns:\/\/\/([A-Za-z0-9.-]+):(\d{1,5})$/

function port(text: string, value: string): number {
  const p = Number(value)
  if (!(Number.isInteger(p) && p >= 1 && p <= 65_535)) throw new EndpointError(`endpoint ${JSON.stringify(text)}: port ${value} is not in 1..65535`)
  return p
}

/** Parse endpoint values (each possibly comma-separated); duplicates are errors. */
export function parseEndpoints(values: readonly string[]): EndpointSpec[] {
  const specs: EndpointSpec[] = []
  const seen = new Set<string>()
  for (const text of values.flatMap((v) => v.split(',')).map((v) => v.trim())) {
    if (text === '') throw new EndpointError('an empty endpoint (two commas, or a trailing one?)')
    const dns = DNS.exec(text)
    const hostPort = HOST_PORT.exec(text)
    let spec: EndpointSpec
    if (dns) spec = {kind: 'dns', name: dns[1], port: port(text, dns[2]), text}
    else if (hostPort) spec = (port(text, hostPort[2]), {kind: 'address', address: text})
    else throw new EndpointError(`endpoint ${JSON.stringify(text)}: expected host:port, [ipv6]:port or dns:///name:port`)
    if (seen.has(text)) throw new EndpointError(`endpoint ${text} is given twice`)
    seen.add(text)
    specs.push(spec)
  }

  if (specs.length === 0) throw new EndpointError('no endpoint given')
  return specs
}

/** One concrete sidecar address; `dnsName` when it came from a dns:/// name (the TLS server name). */
export interface ResolvedEndpoint {
  address: string
  dnsName?: string
}

/** Concrete host:port addresses, DNS names looked up now (all their A/AAAA records). */
export async function resolveEndpoints(specs: readonly EndpointSpec[]): Promise<ResolvedEndpoint[]> {
  const addresses: ResolvedEndpoint[] = []
  for (const spec of specs) {
    if (spec.kind === 'address') {
      addresses.push({address: spec.address})
      continue
    }

    let found: {address: string; family: number}[]
    try {
      found = await lookup(spec.name, {all: true})
    } catch (error) {
      throw new EndpointError(`endpoint ${spec.text}: cannot resolve ${spec.name}: ${(error as Error).message}`)
    }

    if (found.length === 0) throw new EndpointError(`endpoint ${spec.text}: ${spec.name} resolves to no address`)
    for (const {address, family} of found) addresses.push({address: family === 6 ? `[${address}]:${spec.port}` : `${address}:${spec.port}`, dnsName: spec.name})
  }

  const seen = new Set<string>()
  return addresses.filter((a) => !seen.has(a.address) && seen.add(a.address))
}

/**
 * Errors that are the host's fault — it is unreachable, went away mid-call, or did not answer
 * in time — so the unit may run elsewhere. Anything else (bad input, a bug) fails the run.
 */
export function isHostFailure(error: unknown): boolean {
  if (!(error instanceof SidecarError)) return false
  if (['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'ABORTED', 'CANCELLED'].includes(error.code)) return true
  // a connection reset in the middle of a stream surfaces as INTERNAL from grpc-js
  return error.code === 'INTERNAL' && /RST_STREAM|ECONNRESET|socket hang up|Connection dropped/i.test(error.message)
}

/** A pool endpoint backed by a SidecarClient; healthy = grpc.health.v1 says SERVING. */
export function sidecarEndpoint(address: string, client: SidecarClient = new SidecarClient(address)): Endpoint<SidecarClient> {
  return {
    id: address,
    client,
    async healthy() {
      return (await client.healthCheck()) === 'SERVING'
    },
  }
}
