/**
 * End to end on the embedded organism: the CLI starts a real sidecar over real gRPC and ranks
 * every head by query-level Ships; then greedy generation with the top-5 heads ablated (UA)
 * must turn more of the organism's refusals into non-refusals than the bottom-5 heads do.
 */
import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {makeJudge} from '../../src/data/judges.js'
import {loadDataset} from '../../src/data/datasets.js'
import {resolveModel} from '../../src/models.js'
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
})
