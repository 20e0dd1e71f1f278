/**
 * Where things live, relative to the checkout. This file sits at src/paths.ts (dev, vitest) or
 * dist/paths.js (built), one level below the repository root either way.
 */
import {dirname, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

export const repoRoot: string = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** The shared data folder beside the project (never copied into it); SAHARA_DATA_DIR overrides. */
export function dataDir(): string {
  return process.env.SAHARA_DATA_DIR ?? resolve(repoRoot, '..', 'shared', 'data')
}

/** The embedded models (the organisms) committed under models/. */
export const modelsDir: string = resolve(repoRoot, 'models')

export const sidecarDir: string = resolve(repoRoot, 'sidecar')

/** Local state (the detached sidecar's pid/port file and logs); --state-dir overrides. */
export const defaultStateDir: string = resolve(repoRoot, '.sahara')
