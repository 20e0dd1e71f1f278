/** Shared by the CLI and integration tests: run the built CLI, find and build what they need. */
import {execa} from 'execa'
import {existsSync} from 'node:fs'
import {dirname, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

import {ConfigError} from '../src/config/fields.js'

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const python = process.env.SAHARA_PYTHON ?? resolve(repoRoot, 'sidecar', '.venv', 'bin', 'python')

/** The real sidecar can run: its venv and its generated gRPC stubs exist. */
export const sidecarAvailable = existsSync(python) && existsSync(resolve(repoRoot, 'sidecar', 'sahara_sidecar', '_gen'))

/**
 * Integration tests skip without a sidecar on a developer's machine, but never in CI (CI=true):
 * there a missing sidecar fails the suite.
 */
export const skipIntegration = !sidecarAvailable && process.env.CI !== 'true'

export function cli(args: string[], options: {cwd?: string; timeoutMs?: number; env?: Record<string, string>} = {}) {
  return execa(resolve(repoRoot, 'bin', 'run.js'), args, {
    cwd: options.cwd ?? repoRoot,
    reject: false,
    timeout: options.timeoutMs ?? 240_000,
    env: {NO_COLOR: '1', ...options.env},
  })
}

export async function buildTinyModel(dir: string, family = 'llama', seed = 0): Promise<string> {
  await execa(python, [resolve(repoRoot, 'test', 'fixtures', 'build_tiny_model.py'), dir, '--family', family, '--seed', String(seed)], {cwd: repoRoot})
  return dir
}

/** The ConfigError that `parse` throws (any other outcome fails the test). */
export function configErrorOf(parse: () => unknown): ConfigError {
  try {
    parse()
  } catch (error) {
    if (error instanceof ConfigError) return error
    throw error
  }

  throw new Error('expected a ConfigError')
}
