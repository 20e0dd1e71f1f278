/**
 * `--heads-from DIR`: the heads of an earlier run, read from DIR/summary.json (a search run's
 * group, or a ships run's top-K heads by mean KL). The pure part is src/science/head-sets.ts.
 */
import {existsSync, readFileSync, statSync} from 'node:fs'
import {resolve} from 'node:path'

import {type HeadSelection, headsFromSummary} from '../science/head-sets.js'
import {HeadNameError} from '../science/heads.js'

export function readHeadsFrom(dir: string, top: number | undefined, cwd: string = process.cwd()): HeadSelection {
  const abs = resolve(cwd, dir)
  const file = existsSync(abs) && statSync(abs).isFile() ? abs : resolve(abs, 'summary.json')
  if (!existsSync(file)) throw new HeadNameError(`--heads-from ${dir}: no summary.json in ${abs} (expected a ships or search run folder)`)
  let summary: unknown
  try {
    summary = JSON.parse(readFileSync(file, 'utf8'))
  } catch (error) {
    throw new HeadNameError(`--heads-from ${dir}: ${file} is not valid JSON (${(error as Error).message})`)
  }
  const {source, heads} = headsFromSummary(summary, top, file)
  return {kind: 'from', dir: abs, source, heads, top}
}
