/**
 * Result files that survive a crash: a reader (or a resumed run) sees a file's old content or its
 * new content, never a torn mix, and a line reported written is on disk.
 */
import {closeSync, fsyncSync, openSync, renameSync, rmSync, writeFileSync, writeSync} from 'node:fs'

/**
 * JSON text of a result in which a number that is not finite (an infinite KL with smoothing 0, a
 * NaN from non-finite log-probs) is written as its string, "Infinity" or "NaN", not as null.
 */
export function resultJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), indent)
}

/**
 * Replace `path` with `data`: write a temporary file beside it, fsync it, rename it over `path`
 * (atomic within a file system). On failure the old file is untouched and the temporary removed.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp`
  try {
    const fd = openSync(tmp, 'w')
    try {
      writeFileSync(fd, data)
      fsyncSync(fd) // the data is on disk before the name points at it
    } finally {
      closeSync(fd)
    }

    renameSync(tmp, path)
  } catch (error) {
    try {
      rmSync(tmp, {force: true})
    } catch {
      // not a file of ours to remove (a folder of that name, say): leave it
    }

    throw error
  }
}

/** Append one line and fsync it: once this returns, the line survives a crash. */
export function appendLineDurable(path: string, line: string): void {
  const fd = openSync(path, 'a')
  try {
    writeSync(fd, `${line}\n`)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}
