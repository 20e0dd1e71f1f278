/**
 * Compile once before the suite, so tests that run ./bin/run.js exercise the current source
 * (stubs are generated first when src/gen is missing). SAHARA_SKIP_BUILD=1 skips it.
 */
import {execFileSync} from 'node:child_process'
import {existsSync} from 'node:fs'
import {dirname, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

export default function setup(): void {
  if (process.env.SAHARA_SKIP_BUILD === '1') return
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
  const script = existsSync(resolve(root, 'src', 'gen')) ? 'compile' : 'build'
  execFileSync('npm', ['run', '--silent', script], {cwd: root, stdio: ['ignore', 'ignore', 'inherit']})
}
