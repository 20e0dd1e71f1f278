/**
 * Build once before the suite (buf generate + tsc), so tests that run ./bin/run.js exercise the
 * current source. Cheap when nothing changed: tsc is incremental-free but fast at this size.
 */
import {execFileSync} from 'node:child_process'
import {dirname, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

export default function setup(): void {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
  if (process.env.SAHARA_SKIP_BUILD === '1') return
  execFileSync('npm', ['run', '--silent', 'build'], {cwd: root, stdio: ['ignore', 'ignore', 'inherit']})
}
