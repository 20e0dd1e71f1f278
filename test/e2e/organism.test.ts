/**
 * End to end on the embedded organism: the CLI starts a real sidecar over real gRPC and ranks
 * every head by query-level Ships; then greedy generation with the top-5 heads ablated (UA)
 * must turn more of the organism's refusals into non-refusals than the bottom-5 heads do.
 */
import {mkdtempSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {makeJudge} from '../../src/data/judges.js'
import {loadDataset} from '../../src/data/datasets.js'
import {resolveModel} from '../../src/models.js'
import type {ShipsQueryLine} from '../../src/jobs/ships.js'
import {type Head, formatHead} from '../../src/science/heads.js'
import {AblationMethod, SidecarClient} from '../../src/sidecar/client.js'
import {type RunningSidecar, startSidecar} from '../../src/sidecar/process.js'
import {cli} from '../helpers.js'

interface RankedHead extends Head {
  mean_kl: number
  topk_count: number
}

const judge = makeJudge('keyword-paper')
const MAX_NEW_TOKENS = 32 // the organism's fixed replies are ~15 tokens

describe('organism: Ships ranking predicts which heads its refusals depend on', () => {
  let sidecar: RunningSidecar
  let client: SidecarClient
  let prompts: string[]

  beforeAll(async () => {
    sidecar = await startSidecar({model: resolveModel('organism').source, device: 'cpu', dtype: 'float32'})
    client = new SidecarClient(sidecar.endpoint)
    prompts = loadDataset('jailbreakbench').prompts
  })

  afterAll(async () => {
    client?.close()
    await sidecar?.stop()
  })

  async function refusals(heads: Head[]): Promise<boolean[]> {
    const replies = await client.generate({
      prompts,
      maxNewTokens: MAX_NEW_TOKENS,
      spec: {heads, method: AblationMethod.ABLATION_METHOD_UA, eps: 1e-5},
    })
    return replies.map((r) => judge(r.text).refused)
  }

  it('ranks all heads, and the top-5 flip more refusals than the bottom-5', {timeout: 600_000}, async () => {
    const out = mkdtempSync(join(tmpdir(), 'sahara-e2e-'))
    const run = await cli(['ships', '--model', 'organism', '--dataset', 'jailbreakbench', '--out', out, '--json'])
    expect(run.exitCode, run.stderr).toBe(0)
    const summary = JSON.parse(run.stdout) as {heads: RankedHead[]; n_queries: number}
    const facts = await client.describe()
    expect(summary.n_queries).toBe(prompts.length)
    expect(summary.heads).toHaveLength(facts.numLayers * facts.numHeads)
    const kls = summary.heads.map((h) => h.mean_kl)
    expect(kls).toEqual([...kls].sort((a, b) => b - a))

    const top = summary.heads.slice(0, 5)
    const bottom = summary.heads.slice(-5)
    const clean = await refusals([])
    const ablatedTop = await refusals(top.map(({layer, head}) => ({layer, head})))
    const ablatedBottom = await refusals(bottom.map(({layer, head}) => ({layer, head})))

    const refusedClean = clean.filter(Boolean).length
    const flips = (ablated: boolean[]) => clean.filter((refused, i) => refused && !ablated[i]).length
    const report = {
      top: top.map(formatHead),
      bottom: bottom.map(formatHead),
      refusedClean,
      flipsTop: flips(ablatedTop),
      flipsBottom: flips(ablatedBottom),
    }
    console.log('organism e2e', JSON.stringify(report))
    expect(refusedClean).toBeGreaterThan(prompts.length / 4)
    expect(report.flipsTop).toBeGreaterThan(report.flipsBottom)
  })

  it('--logprob-support 16: every KL a lower bound of the full one, the same top-10', {timeout: 600_000}, async () => {
    const scan = async (support: number) => {
      const out = mkdtempSync(join(tmpdir(), 'sahara-support-'))
      const args = ['ships', '--model', 'organism', '--dataset', 'jailbreakbench', '--endpoint', sidecar.endpoint, '--top-k', '64', '--out', out, '--json']
      const run = await cli([...args, '--logprob-support', String(support)])
      expect(run.exitCode, run.stderr).toBe(0)
      const summary = JSON.parse(run.stdout) as {heads: RankedHead[]; logprob_support: number}
      const lines = readFileSync(join(out, 'ships.jsonl'), 'utf8').trim().split('\n')
      const perQuery = lines.map((line) => new Map((JSON.parse(line) as ShipsQueryLine).top.map((h) => [h.head, h.kl])))
      return {summary, perQuery}
    }

    const [full, coarse] = [await scan(0), await scan(16)]
    expect([full.summary.logprob_support, coarse.summary.logprob_support]).toEqual([0, 16])
    const top10 = (heads: RankedHead[]) => heads.slice(0, 10).map(formatHead)
    expect(top10(coarse.summary.heads)).toEqual(top10(full.summary.heads))
    const fullMean = new Map(full.summary.heads.map((h) => [formatHead(h), h.mean_kl]))
    let shortfall = 0
    for (const head of coarse.summary.heads) {
      const exact = fullMean.get(formatHead(head))!
      expect(head.mean_kl).toBeLessThanOrEqual(exact * (1 + 1e-6) + 1e-9)
      shortfall = Math.max(shortfall, (exact - head.mean_kl) / exact)
    }

    // measured on the organism (vocab 2048): mean KLs at most 19% below the full ones
    expect(shortfall).toBeLessThan(0.3)
    for (const [q, kls] of coarse.perQuery.entries()) {
      for (const [head, kl] of kls) if (full.perQuery[q].has(head)) expect(kl).toBeLessThanOrEqual(full.perQuery[q].get(head)! * (1 + 1e-6) + 1e-9)
    }
  })
})
