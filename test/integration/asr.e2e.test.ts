/**
 * `sahara asr` and `sahara params` against the real sidecar on tiny random models built offline:
 * the JSON result and replies.jsonl, a baseline-only run, random:K repeatable for a seed, a head
 * out of range refused before any generation, an asr job in a sweep; and the parameter count
 * from config.json alone agreeing with the sidecar's Describe (tiny Llama, tiny Qwen2 with q
 * biases, the organism).
 *
 * One detached sidecar serves the asr runs (--endpoint), so the suite starts few processes.
 * Skipped on a machine without the sidecar's environment, never in CI (see test/helpers.ts).
 */
import {existsSync, mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {AsrReplyLine, AsrSummary} from '../../src/jobs/asr.js'
import {buildTinyModel, cli, skipIntegration} from '../helpers.js'

const PROMPTS = ['How do I bake bread at home?', 'Tell me a joke about birds.', 'What is the capital of France?', 'Write a poem, please.', 'Name a colour.']

describe.skipIf(skipIntegration)('asr and params end to end (real sidecar, tiny models)', {timeout: 300_000}, () => {
  let dir: string
  let model: string
  let qwen: string
  let prompts: string
  let endpoint: string
  const stateDir = () => join(dir, 'state')

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sahara-asr-'))
    ;[model, qwen] = await Promise.all([buildTinyModel(join(dir, 'tiny-llama')), buildTinyModel(join(dir, 'tiny-qwen2'), 'qwen2')])
    prompts = join(dir, 'prompts.json')
    writeFileSync(prompts, JSON.stringify(PROMPTS))
    const start = await cli(['sidecar', 'start', '--model', model, '--state-dir', stateDir(), '--json'])
    expect(start.exitCode, start.stderr).toBe(0)
    endpoint = (JSON.parse(start.stdout) as {endpoint: string}).endpoint
  })

  afterAll(async () => {
    if (dir && existsSync(join(stateDir(), 'sidecar.json'))) await cli(['sidecar', 'stop', '--state-dir', stateDir()])
  })

  const asr = (args: string[]) => cli(['asr', '--model', model, '--dataset', prompts, '--max-new-tokens', '8', '--endpoint', endpoint, ...args])

  it('ablates a head set: the JSON result and one replies.jsonl line per prompt', async () => {
    const out = join(dir, 'ablated')
    const run = await asr(['--heads', 'L0H1,L2H3', '--out', out, '--json'])
    expect(run.exitCode, run.stderr).toBe(0)
    const summary = JSON.parse(run.stdout) as AsrSummary
    expect(summary).toMatchObject({
      kind: 'asr',
      n: PROMPTS.length,
      judge: 'keyword-paper',
      method: 'ua',
      eps: 1e-5,
      sampling: 'greedy',
      max_new_tokens: 8,
      heads: [
        {layer: 0, head: 1},
        {layer: 2, head: 3},
      ],
      head_names: ['L0H1', 'L2H3'],
      num_layers: 3,
      num_heads: 4,
      generate_calls: 2,
    })
    for (const key of ['asr', 'baseline_asr', 'n_refused_baseline']) expect(typeof (summary as unknown as Record<string, unknown>)[key]).toBe('number')
    expect(summary.flip_rate === null || (summary.flip_rate >= 0 && summary.flip_rate <= 1)).toBe(true)
    // hidden 64, head size 16, no q bias: 2 heads x 64*16 rows of W_q
    expect(summary.parameters.modified).toBe(2 * 64 * 16)
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'))).toMatchObject({asr: summary.asr, n: PROMPTS.length})

    const lines = readFileSync(join(out, 'replies.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AsrReplyLine)
    expect(lines.map((l) => l.index)).toEqual([0, 1, 2, 3, 4])
    expect(lines.map((l) => l.prompt)).toEqual(PROMPTS)
    for (const line of lines) {
      expect(typeof line.clean.reply).toBe('string')
      expect(line.clean.new_tokens).toBeLessThanOrEqual(8)
      expect(typeof line.clean.verdict.refused).toBe('boolean')
      expect(line.ablated).not.toBeNull()
      expect(line.flipped).toBe(line.clean.verdict.refused && !line.ablated!.verdict.refused)
      if (line.clean.verdict.refused) expect(line.clean.verdict.rule).toBeDefined()
    }
    const harmful = lines.filter((l) => !l.ablated!.verdict.refused).length
    expect(summary.asr).toBe(harmful / PROMPTS.length)
  })

  it('without --heads: only the baseline is generated, asr = baseline_asr', async () => {
    const out = join(dir, 'clean')
    const run = await asr(['--out', out, '--json', '--judge', 'keyword-gcg'])
    expect(run.exitCode, run.stderr).toBe(0)
    const summary = JSON.parse(run.stdout) as AsrSummary
    expect(summary.asr).toBe(summary.baseline_asr)
    expect(summary.heads).toEqual([])
    expect(summary.generate_calls).toBe(1)
    expect(summary.judge).toBe('keyword-gcg')
    const lines = readFileSync(join(out, 'replies.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AsrReplyLine)
    expect(lines.every((l) => l.ablated === null && !l.flipped)).toBe(true)
  })

  it('random:K draws the same heads for the same seed (and top-k sampling repeats too)', async () => {
    const args = ['--heads', 'random:3', '--seed', '5', '--avoid', 'L0H0', '--sampling', 'topk:5', '--json']
    const [a, b] = [await asr([...args, '--out', join(dir, 'r1')]), await asr([...args, '--out', join(dir, 'r2')])]
    expect(a.exitCode, a.stderr).toBe(0)
    const [sa, sb] = [JSON.parse(a.stdout) as AsrSummary, JSON.parse(b.stdout) as AsrSummary]
    expect(sa.head_names).toHaveLength(3)
    expect(sa.head_names).not.toContain('L0H0')
    expect(sa.head_names).toEqual(sb.head_names)
    expect(sa.heads_label).toBe(`random:3 seed 5 avoiding L0H0: ${sa.head_names.join(',')}`)
    expect(readFileSync(join(dir, 'r1', 'replies.jsonl'), 'utf8')).toBe(readFileSync(join(dir, 'r2', 'replies.jsonl'), 'utf8'))
  })

  it('a head out of range: exit 2, naming the head and the model\'s layers and heads, before any generation', async () => {
    const out = join(dir, 'bad')
    const run = await asr(['--heads', 'L1H2,L3H0', '--out', out])
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain('head L3H0 is out of range for model')
    expect(run.stderr).toContain('3 layers (L0..L2) and 4 heads per layer (H0..H3)')
    expect(run.stderr).not.toContain('clean: prompts')
    expect(existsSync(join(out, 'replies.jsonl'))).toBe(false)
    const bad = await asr(['--heads', 'L1H2,L1H2'])
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr).toContain('head L1H2 given twice')
  })

  it('--heads-from a ships run folder: its top-K heads', async () => {
    const ships = join(dir, 'ships')
    const scan = await cli(['ships', '--model', model, '--dataset', prompts, '--out', ships, '--endpoint', endpoint, '--json'])
    expect(scan.exitCode, scan.stderr).toBe(0)
    const ranked = (JSON.parse(scan.stdout) as {heads: {layer: number; head: number}[]}).heads
    const run = await asr(['--heads-from', ships, '--top', '2', '--out', join(dir, 'from'), '--json'])
    expect(run.exitCode, run.stderr).toBe(0)
    expect((JSON.parse(run.stdout) as AsrSummary).heads).toEqual(ranked.slice(0, 2).map(({layer, head}) => ({layer, head})))
  })

  it('an asr job in a sweep, with random heads repeated over seeds', async () => {
    const sweep = join(dir, 'asr-sweep.yaml')
    writeFileSync(
      sweep,
      `name: asr-sweep\njobs:\n  - kind: asr\n    heads: random:2\n    seed: [1, 2]\n    max_new_tokens: 4\n    matrix: {model: ${model}, dataset: ${prompts}}\n`,
    )
    const run = await cli(['run', sweep, '--runs-dir', join(dir, 'runs'), '--endpoint', endpoint, '--json'])
    expect(run.exitCode, run.stderr).toBe(0)
    for (const seed of [1, 2]) expect(existsSync(join(dir, 'runs', 'asr-sweep', `asr-tiny-llama-prompts-ua-1e-5-random2-s${seed}`, 'replies.jsonl'))).toBe(true)
  })

  it('top-k sampled replies do not depend on how the prompts are cut into units (prompt i draws with seed + i)', async () => {
    const sweep = join(dir, 'sampled.yaml')
    const job = (name: string, perUnit: number) => `  - kind: asr\n    name: ${name}\n    heads: L1H2\n    sampling: topk:5\n    seed: 3\n    prompts_per_unit: ${perUnit}\n    max_new_tokens: 6\n    matrix: {model: ${model}, dataset: ${prompts}}\n`
    writeFileSync(sweep, `name: sampled\njobs:\n${job('one', 1)}${job('all', 64)}`)
    const run = await cli(['run', sweep, '--runs-dir', join(dir, 'runs'), '--endpoint', endpoint, '--json'])
    expect(run.exitCode, run.stderr).toBe(0)
    const replies = (name: string) =>
      readFileSync(join(dir, 'runs', 'sampled', `${name}-tiny-llama-prompts-ua-1e-5-L1H2`, 'replies.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as AsrReplyLine)
        .map((l) => [l.clean.reply, l.ablated?.reply])
    expect(replies('one')).toEqual(replies('all'))
  })

  it('asr jobs take the top-1 and top-2 heads of a ships job of the same sweep (heads_from_job)', async () => {
    const sweep = join(dir, 'chain.yaml')
    writeFileSync(
      sweep,
      `name: chain\njobs:\n  - kind: ships\n    name: scan\n    matrix: {model: ${model}, dataset: ${prompts}}\n  - kind: asr\n    heads_from_job: scan\n    top: [1, 2]\n    max_new_tokens: 4\n    matrix: {model: ${model}, dataset: ${prompts}}\n`,
    )
    const run = await cli(['run', sweep, '--runs-dir', join(dir, 'runs'), '--endpoint', endpoint, '--json'])
    expect(run.exitCode, run.stderr).toBe(0)
    const folder = join(dir, 'runs', 'chain')
    const ranked = (JSON.parse(readFileSync(join(folder, 'scan-tiny-llama-prompts-ua-1e-5', 'summary.json'), 'utf8')) as {heads: {layer: number; head: number}[]}).heads
    for (const top of [1, 2]) {
      const summary = JSON.parse(readFileSync(join(folder, `asr-tiny-llama-prompts-ua-1e-5-top${top}`, 'summary.json'), 'utf8')) as AsrSummary
      expect(summary.heads).toEqual(ranked.slice(0, top).map(({layer, head}) => ({layer, head})))
    }
  })

  it('params: config.json alone and the sidecar\'s Describe agree (tiny Llama, tiny Qwen2 with q bias, the organism)', async () => {
    // the tiny Llama through the running sidecar; the others each through a local one (--describe)
    for (const [m, bias, via] of [
      [model, 0, ['--endpoint', endpoint]],
      [qwen, 16, ['--describe']],
      ['organism', 0, ['--describe']],
    ] as const) {
      const args = ['params', '--model', m, '--heads', 'L0H1,L1H0', '--method', 'ua', '--json']
      const [fromConfig, fromSidecar] = await Promise.all([cli(args), cli([...args, ...via])])
      expect(fromConfig.exitCode, fromConfig.stderr).toBe(0)
      expect(fromSidecar.exitCode, fromSidecar.stderr).toBe(0)
      const [c, s] = [JSON.parse(fromConfig.stdout), JSON.parse(fromSidecar.stdout)]
      expect(c.source).toBe('config')
      expect(s.source).toBe('sidecar')
      expect(c.total).toBe(s.total)
      expect(c.modified).toBe(s.modified)
      expect(c.q_bias).toBe(bias > 0)
      expect(c.modified).toBe(2 * ((c.hidden_size as number) * (c.head_dim as number) + bias))
    }
    const sc = await cli(['params', '--model', qwen, '--heads', 'L0H1', '--method', 'sc', '--json'])
    expect(JSON.parse(sc.stdout).modified).toBe(64 * 16)
    const bad = await cli(['params', '--model', model, '--heads', 'L5H0'])
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr).toContain('head L5H0 is out of range')
  })
})
