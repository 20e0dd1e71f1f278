/**
 * Work units spread over several sidecars. Each endpoint runs up to `concurrency` units at once
 * (two keep a GPU busy while the previous result streams back). A unit that fails because of its
 * host (unreachable, reset, timed out) goes back to the front of the queue for another endpoint,
 * and that endpoint is dropped with a warning and health-checked again later; a unit that fails
 * for any other reason (bad input, a bug) fails the run. When no endpoint is left for longer
 * than `giveUpAfterMs`, the run stops with an error naming every endpoint and why it was dropped;
 * whatever units finished were already handed to their caller (and stored) as they finished.
 *
 * Results are returned in task order, so the outcome does not depend on which host ran what.
 */

export interface Endpoint<C> {
  /** host:port, for messages */
  id: string
  client: C
  /** true when the endpoint answers its health check (grpc.health.v1) as serving */
  healthy(): Promise<boolean>
}

export interface PoolOptions {
  /** Units in flight per endpoint (default 2). */
  concurrency?: number
  /** How often a dropped endpoint is checked again (ms, default 2000). */
  recheckMs?: number
  /** How often the endpoints in use are health-checked during a run (ms, default 10000). */
  monitorMs?: number
  /** How long to wait for an endpoint when none is left (ms, default 30000). */
  giveUpAfterMs?: number
  /** Host failures one unit may see before the run fails (default 5): a unit that kills every host is not retried forever. */
  maxAttempts?: number
  /** Whether an error is the host's fault (re-queue) rather than the unit's (fail). */
  isHostFailure: (error: unknown) => boolean
  warn?: (message: string) => void
}

export class NoEndpointsError extends Error {
  override name = 'NoEndpointsError'
}

interface EndpointState<C> {
  endpoint: Endpoint<C>
  inFlight: number
  up: boolean
  reason?: string
  /** units this endpoint finished (for reports and tests) */
  done: number
}

export type Task<C, R> = (client: C, endpoint: string) => Promise<R>

const describeError = (error: unknown) => (error instanceof Error ? error.message : String(error)).split('\n')[0]

export class EndpointPool<C> {
  private readonly states: EndpointState<C>[]
  private readonly concurrency: number
  private readonly recheckMs: number
  private readonly giveUpAfterMs: number
  private readonly maxAttempts: number
  private recheckTimer: NodeJS.Timeout | undefined
  /** run() loops waiting for a unit to finish or an endpoint to come back (several runs may share a pool) */
  private readonly waiters = new Set<() => void>()

  constructor(
    endpoints: Endpoint<C>[],
    private readonly options: PoolOptions,
  ) {
    if (endpoints.length === 0) throw new NoEndpointsError('no endpoints given')
    this.states = endpoints.map((endpoint) => ({endpoint, inFlight: 0, up: true, done: 0}))
    this.concurrency = Math.max(1, options.concurrency ?? 2)
    this.recheckMs = options.recheckMs ?? 2000
    this.giveUpAfterMs = options.giveUpAfterMs ?? 30_000
    this.maxAttempts = options.maxAttempts ?? 5
  }

  /** The first endpoint that was serving at the last check (for one-off calls). */
  get anyClient(): C {
    return (this.states.find((s) => s.up) ?? this.states[0]).endpoint.client
  }

  /** A client serving now: every endpoint health-checked again first (one that stopped since the
   * last check is dropped), so that the one-off calls of the next job (Describe, CountTokens) do not
   * go to a host that died between jobs. Throws NoEndpointsError when none serves. */
  async servingClient(): Promise<C> {
    await this.checkAll()
    return this.anyClient
  }

  /** Units finished per endpoint so far. */
  get finishedBy(): Record<string, number> {
    return Object.fromEntries(this.states.map((s) => [s.endpoint.id, s.done]))
  }

  /** Total units that may run at once on the endpoints now up. */
  get capacity(): number {
    return this.states.filter((s) => s.up).length * this.concurrency
  }

  /** Health-check every endpoint; drop those not serving. Throws when none is. */
  async checkAll(): Promise<void> {
    await Promise.all(this.states.map((s) => this.check(s)))
    if (!this.states.some((s) => s.up)) throw this.noneLeft()
  }

  private async check(state: EndpointState<C>): Promise<void> {
    let ok = false
    try {
      ok = await state.endpoint.healthy()
    } catch (error) {
      state.reason = describeError(error)
    }

    if (ok && !state.up) this.options.warn?.(`endpoint ${state.endpoint.id} is serving again; using it`)
    if (!ok && state.up) this.drop(state, state.reason ?? 'not serving')
    if (ok) {
      state.up = true
      state.reason = undefined
    }
  }

  private drop(state: EndpointState<C>, reason: string): void {
    if (!state.up) return
    state.up = false
    state.reason = reason
    this.options.warn?.(`endpoint ${state.endpoint.id} dropped (${reason}); checking it again every ${this.recheckMs / 1000} s`)
    this.scheduleRecheck()
  }

  private scheduleRecheck(): void {
    if (this.recheckTimer) return
    this.recheckTimer = setTimeout(async () => {
      this.recheckTimer = undefined
      await Promise.all(this.states.filter((s) => !s.up).map((s) => this.check(s)))
      if (this.states.some((s) => !s.up)) this.scheduleRecheck()
      this.notify()
    }, this.recheckMs)
    this.recheckTimer.unref()
  }

  private noneLeft(): NoEndpointsError {
    const why = this.states.map((s) => `${s.endpoint.id}: ${s.reason ?? 'not serving'}`).join('; ')
    return new NoEndpointsError(`no sidecar left to run on (${why})`)
  }

  /**
   * Run every task on some endpoint; results in task order. `onResult` sees each result as it
   * arrives (to store it before anything else can fail).
   */
  async run<R>(tasks: Task<C, R>[], onResult?: (index: number, result: R, endpoint: string) => void): Promise<R[]> {
    const results: R[] = Array.from({length: tasks.length})
    const queue = tasks.map((_, i) => i)
    const attempts = new Array<number>(tasks.length).fill(0)
    // endpoints in use are health-checked now and then: one that stops serving gets no new units
    const monitor = setInterval(() => {
      for (const state of this.states.filter((s) => s.up)) void this.check(state)
    }, this.options.monitorMs ?? 10_000)
    monitor.unref()
    try {
      return await this.schedule(tasks, results, queue, attempts, onResult)
    } finally {
      clearInterval(monitor)
    }
  }

  private async schedule<R>(
    tasks: Task<C, R>[],
    results: R[],
    queue: number[],
    attempts: number[],
    onResult: ((index: number, result: R, endpoint: string) => void) | undefined,
  ): Promise<R[]> {
    let remaining = tasks.length
    let failure: unknown
    let noneSince: number | undefined

    while (remaining > 0 && failure === undefined) {
      for (const state of this.states) {
        while (state.up && state.inFlight < this.concurrency && queue.length > 0 && failure === undefined) {
          const index = queue.shift()!
          state.inFlight++
          tasks[index](state.endpoint.client, state.endpoint.id).then(
            (result) => {
              state.inFlight--
              state.done++
              results[index] = result
              remaining--
              try {
                onResult?.(index, result, state.endpoint.id)
              } catch (error) {
                failure ??= error
              }
              this.notify()
            },
            (error: unknown) => {
              state.inFlight--
              if (this.options.isHostFailure(error)) {
                attempts[index]++
                if (attempts[index] >= this.maxAttempts) {
                  failure ??= new NoEndpointsError(`a unit failed ${attempts[index]} times in a row with a host failure (a host may come back and be tried again), last on ${state.endpoint.id}: ${describeError(error)}`)
                } else {
                  queue.unshift(index)
                  this.drop(state, describeError(error))
                }
              } else {
                failure ??= error
              }
              this.notify()
            },
          )
        }
      }

      if (remaining === 0 || failure !== undefined) break
      const anyUp = this.states.some((s) => s.up)
      const anyBusy = this.states.some((s) => s.inFlight > 0)
      if (!anyUp && !anyBusy) {
        noneSince ??= Date.now()
        if (Date.now() - noneSince > this.giveUpAfterMs) {
          failure = this.noneLeft()
          break
        }
        this.scheduleRecheck()
      } else {
        noneSince = undefined
      }

      // until a unit finishes or an endpoint returns; and now and then, to notice the give-up deadline
      await this.waitForChange(Math.min(this.recheckMs, 1000))
    }

    if (failure !== undefined) {
      // let the units already running finish (their results are stored by onResult), then fail
      while (this.states.some((s) => s.inFlight > 0)) await this.waitForChange(200)
      throw failure
    }

    return results
  }

  private notify(): void {
    for (const waiter of this.waiters) waiter()
    this.waiters.clear()
  }

  private waitForChange(maxMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waiters.add(resolve)
      setTimeout(resolve, maxMs).unref()
    })
  }

  close(): void {
    if (this.recheckTimer) clearTimeout(this.recheckTimer)
    this.recheckTimer = undefined
  }
}
