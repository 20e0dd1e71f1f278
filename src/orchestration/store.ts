/**
 * The crash-safe store of finished work units: an append-only JSON-lines file, one record per
 * unit, each written with fsync before the unit counts as done. A process killed at any moment
 * leaves at most one torn record, at the end; it is detected (no newline, bad JSON or a checksum
 * that does not match), skipped and cut off before the next append, never fatal. The first line
 * names the format and its version; a file of another version is refused, never rewritten.
 *
 *   {"format":"sahara-units","version":1}
 *   {"key":"<unit key>","job":"<job name>","unit":"<unit id>","endpoint":"host:port","result":{...},"sum":"<sha256 of key+result, 16 hex>"}
 *
 * The key is what makes a unit reusable: a hash of everything its result depends on (src/orchestration/units.ts).
 * A later record with the same key replaces an earlier one (it can only hold the same result).
 */
import {createHash} from 'node:crypto'
import {closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync, writeSync} from 'node:fs'

export const STORE_FORMAT = 'sahara-units'
export const STORE_VERSION = 1

export class StoreError extends Error {
  override name = 'StoreError'
}

export interface StoredUnit {
  key: string
  job: string
  unit: string
  /** the sidecar that computed it (for the record; results do not depend on it) */
  endpoint?: string
  result: unknown
}

export interface StoreStats {
  /** Records read back when the store was opened. */
  loaded: number
  /** Torn or corrupt records skipped (at most one at the end after a crash). */
  skipped: number
  /** Records appended by this process. */
  written: number
}

function checksum(key: string, result: unknown): string {
  return createHash('sha256').update(key).update('\0').update(JSON.stringify(result)).digest('hex').slice(0, 16)
}

const HEADER = `${JSON.stringify({format: STORE_FORMAT, version: STORE_VERSION})}\n`

export class UnitStore {
  readonly stats: StoreStats = {loaded: 0, skipped: 0, written: 0}
  private readonly units = new Map<string, StoredUnit>()
  private fd: number

  private constructor(readonly path: string) {
    const exists = existsSync(path)
    const text = exists ? readFileSync(path, 'utf8') : ''
    const goodBytes = text === '' ? 0 : this.load(text)
    // O_APPEND: every record goes to the end, whatever else happens to the file position
    this.fd = openSync(path, 'a+')
    if (goodBytes === 0) {
      ftruncateSync(this.fd, 0)
      writeSync(this.fd, HEADER)
      fsyncSync(this.fd)
    } else if (goodBytes < Buffer.byteLength(text)) {
      ftruncateSync(this.fd, goodBytes) // cut the torn tail so the next record starts on a line of its own
      fsyncSync(this.fd)
    }
  }

  /** Open (or create) the store at `path`, reading back every whole record. */
  static open(path: string): UnitStore {
    return new UnitStore(path)
  }

  /** Parse the file; returns the byte length of its valid prefix. */
  private load(text: string): number {
    const firstNewline = text.indexOf('\n')
    const first = firstNewline < 0 ? text : text.slice(0, firstNewline)
    let header: {format?: unknown; version?: unknown}
    try {
      header = JSON.parse(first) as typeof header
    } catch {
      if (firstNewline < 0) return 0 // a header torn while being written: an empty store
      throw new StoreError(`${this.path}:1: not a Sahara unit store (the first line is not its JSON header); move it away to start afresh`)
    }

    if (header.format !== STORE_FORMAT) throw new StoreError(`${this.path}:1: not a Sahara unit store (format ${JSON.stringify(header.format)})`)
    if (header.version !== STORE_VERSION) {
      throw new StoreError(
        `${this.path}:1: unit store version ${JSON.stringify(header.version)}, this Sahara reads version ${STORE_VERSION}; ` +
          'run it with the Sahara that wrote it, or move the file away to recompute',
      )
    }

    if (firstNewline < 0) return 0
    let offset = firstNewline + 1
    let good = offset
    while (offset < text.length) {
      const end = text.indexOf('\n', offset)
      const line = end < 0 ? text.slice(offset) : text.slice(offset, end)
      const record = end < 0 ? undefined : this.parse(line)
      if (record === undefined) {
        this.stats.skipped++
        if (end < 0) break
      } else {
        this.units.set(record.key, record)
        this.stats.loaded++
        good = end + 1
      }

      offset = end < 0 ? text.length : end + 1
    }

    // byte length of the valid prefix (the text may hold multi-byte characters)
    return Buffer.byteLength(text.slice(0, good))
  }

  private parse(line: string): StoredUnit | undefined {
    try {
      const r = JSON.parse(line) as Partial<StoredUnit> & {sum?: string}
      if (typeof r.key !== 'string' || typeof r.job !== 'string' || typeof r.unit !== 'string' || !('result' in r)) return undefined
      if (r.sum !== checksum(r.key, r.result)) return undefined
      return {key: r.key, job: r.job, unit: r.unit, ...(typeof r.endpoint === 'string' ? {endpoint: r.endpoint} : {}), result: r.result}
    } catch {
      return undefined
    }
  }

  has(key: string): boolean {
    return this.units.has(key)
  }

  get(key: string): StoredUnit | undefined {
    return this.units.get(key)
  }

  /** Every stored unit of a job, in the order stored. */
  ofJob(job: string): StoredUnit[] {
    return [...this.units.values()].filter((u) => u.job === job)
  }

  /** Append one finished unit and fsync it; only then is it in the store. */
  put(unit: StoredUnit): void {
    const line = `${JSON.stringify({key: unit.key, job: unit.job, unit: unit.unit, endpoint: unit.endpoint, result: unit.result, sum: checksum(unit.key, unit.result)})}\n`
    writeSync(this.fd, line)
    fsyncSync(this.fd)
    this.units.set(unit.key, unit)
    this.stats.written++
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd)
    this.fd = -1
  }
}
