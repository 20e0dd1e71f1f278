/**
 * How a job runs its work: as units, each a deterministic function of its key, run on any sidecar
 * of the pool and stored (fsync) the moment it finishes. A unit already in the store is not run
 * again — a killed run, re-run, recomputes nothing it had finished — and because a unit's result
 * depends only on its key, the outcome is the same whatever the sharding and the failures.
 *
 * A unit's key is a hash of the job's identity (its kind, model, dataset contents and options:
 * `jobKey`) and the unit's own key (e.g. which prompts, which heads, which step's group).
 */
import {createHash} from 'node:crypto'

import type {SidecarClient} from '../sidecar/client.js'
import {EndpointPool} from './pool.js'
import type {UnitStore} from './store.js'

export interface Unit<R> {
  /** Readable, unique within the job (e.g. "prompts 33-64"). */
  id: string
  /** Everything the result depends on beyond the job's identity (JSON-serialisable). */
  key: unknown
  /** The key alone says everything the result depends on: jobs with the same unit share it. */
  shared?: boolean
  /** The result must be a JSON value (plain arrays, not typed arrays): it is stored as JSON. */
  run(client: SidecarClient, endpoint: string): Promise<R>
}

export interface WorkCounts {
  /** Units found in the store (not run). */
  reused: number
  /** Units run by this process. */
  computed: number
}

export function hashKey(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 32)
}

export class Work {
  readonly counts: WorkCounts = {reused: 0, computed: 0}

  constructor(
    readonly pool: EndpointPool<SidecarClient>,
    /** The job's name (records are labelled with it) and the hash of its identity. */
    readonly job: {name: string; key: string},
    private readonly store?: UnitStore,
  ) {}

  /** Run the units not stored yet across the pool; every result, stored or new, in unit order. */
  async map<R>(units: readonly Unit<R>[]): Promise<R[]> {
    const keys = units.map((u) => hashKey(u.shared ? ['shared', u.key] : [this.job.key, u.key]))
    const results: (R | undefined)[] = keys.map((k) => this.store?.get(k)?.result as R | undefined)
    const missing = units.flatMap((u, i) => (results[i] === undefined ? [i] : []))
    this.counts.reused += units.length - missing.length
    const computed = await this.pool.run(
      missing.map((i) => (client: SidecarClient, endpoint: string) => units[i].run(client, endpoint)),
      (j, result, endpoint) => {
        const i = missing[j]
        this.store?.put({key: keys[i], job: this.job.name, unit: units[i].id, endpoint, result})
        this.counts.computed++
      },
    )
    // a fresh result goes through JSON like a stored one, so a resumed run assembles the same values
    for (const [j, i] of missing.entries()) results[i] = JSON.parse(JSON.stringify(computed[j])) as R
    return results as R[]
  }

  /** One call that is not stored (e.g. Describe), on any endpoint. */
  async once<R>(fn: (client: SidecarClient) => Promise<R>): Promise<R> {
    const [result] = await this.pool.run([fn])
    return result
  }
}

/** Work on one client, unstored: for a single command run against one sidecar. */
export function singleClientWork(client: SidecarClient, job: {name: string; key: string}): Work {
  const pool = new EndpointPool([{id: client.endpoint, client, healthy: async () => (await client.healthCheck()) === 'SERVING'}], {isHostFailure: () => false})
  return new Work(pool, job)
}
