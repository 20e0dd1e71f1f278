/**
 * The clean model's replies, shared by the asr jobs of one sweep: they depend only on the model,
 * the prompts and the generation settings, so a sweep of 25 asr jobs generates them once, not 25
 * times. One file per setting, named by a hash of it, under <sweep>/baselines/; written to a
 * temporary file and renamed, so a torn file is never read; a file that does not parse or holds
 * another number of replies is ignored (regenerated and replaced).
 */
import {createHash} from 'node:crypto'
import {mkdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import {resolve} from 'node:path'

import type {GenerateResponse} from '../sidecar/client.js'

export interface BaselineKey {
  model: string
  prompts: readonly string[]
  template: string
  maxNewTokens: number
  sampling: string
  /** 0 for greedy (the seed does not matter then). */
  seed: number
}

export interface BaselineCache {
  path: string
  read(): GenerateResponse[] | undefined
  write(replies: readonly GenerateResponse[]): void
}

export function baselineCache(sweepDir: string, key: BaselineKey): BaselineCache {
  const hash = createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 16)
  const dir = resolve(sweepDir, 'baselines')
  const path = resolve(dir, `clean-${hash}.json`)
  return {
    path,
    read() {
      try {
        const stored = JSON.parse(readFileSync(path, 'utf8')) as {key_hash?: string; replies?: GenerateResponse[]}
        return stored.key_hash === hash && Array.isArray(stored.replies) && stored.replies.length === key.prompts.length ? stored.replies : undefined
      } catch {
        return undefined
      }
    },
    write(replies) {
      mkdirSync(dir, {recursive: true})
      writeFileSync(`${path}.tmp`, JSON.stringify({key_hash: hash, model: key.model, template: key.template, max_new_tokens: key.maxNewTokens, sampling: key.sampling, seed: key.seed, replies}))
      renameSync(`${path}.tmp`, path)
    },
  }
}
