import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {parseHeadList} from '../../src/science/head-sets.js'
import {ConfigShapeError, formatPercent, headEditFromFacts, modification, shapeFromConfig, totalParameters} from '../../src/science/params.js'
import {repoRoot} from '../helpers.js'

const config = (name: string) => JSON.parse(readFileSync(join(repoRoot, 'test', 'fixtures', 'configs', name), 'utf8')) as Record<string, unknown>

describe('model totals from config.json', () => {
  it('Llama-2-7b: 6,738,415,616 parameters', () => {
    const shape = shapeFromConfig(config('llama-2-7b.json'))
    expect(shape).toMatchObject({headDim: 128, numKvHeads: 32, tieWordEmbeddings: false, qkvBias: false, oBias: false})
    const {total, breakdown} = totalParameters(shape)
    expect(total).toBe(6_738_415_616)
    expect(breakdown.embeddings).toBe(32000 * 4096)
    expect(breakdown.lm_head).toBe(32000 * 4096)
    expect(breakdown.norms).toBe(65 * 4096)
  })

  it('Llama-3.1-8B (GQA, 8 key/value heads): 8,030,261,248', () => {
    const shape = shapeFromConfig(config('llama-3.1-8b.json'))
    expect(shape.numKvHeads).toBe(8)
    expect(totalParameters(shape).total).toBe(8_030_261_248)
  })

  it('Qwen2.5-7B (q/k/v biases, GQA): 7,615,616,512', () => {
    const shape = shapeFromConfig(config('qwen2.5-7b.json'))
    expect(shape).toMatchObject({qkvBias: true, oBias: false, headDim: 128})
    expect(totalParameters(shape).total).toBe(7_615_616_512)
  })

  it('the organism config (tied embeddings): 1,311,872', () => {
    const shape = shapeFromConfig(JSON.parse(readFileSync(join(repoRoot, 'models', 'organism', 'config.json'), 'utf8')))
    expect(shape.tieWordEmbeddings).toBe(true)
    expect(totalParameters(shape).total).toBe(1_311_872)
  })

  it('tying the embeddings removes lm_head; qwen3 adds q_norm and k_norm', () => {
    const untied = totalParameters(shapeFromConfig(config('llama-2-7b.json'))).total
    expect(totalParameters(shapeFromConfig({...config('llama-2-7b.json'), tie_word_embeddings: true})).total).toBe(untied - 32000 * 4096)
    const qwen3 = shapeFromConfig({...config('llama-2-7b.json'), model_type: 'qwen3', head_dim: 128})
    expect(totalParameters(qwen3).total).toBe(untied + 32 * 2 * 128)
  })

  it('rejects families it cannot count and missing sizes, naming the file', () => {
    expect(() => shapeFromConfig({model_type: 'gpt2'}, 'x/config.json')).toThrow(ConfigShapeError)
    expect(() => shapeFromConfig({model_type: 'gpt2'}, 'x/config.json')).toThrow(/x\/config.json: model_type "gpt2"/)
    expect(() => shapeFromConfig({...config('llama-2-7b.json'), hidden_size: undefined}, 'y.json')).toThrow(/y.json: hidden_size/)
  })
})

describe('parameters an ablation modifies', () => {
  const llama2 = shapeFromConfig(config('llama-2-7b.json'))
  const total = totalParameters(llama2).total
  const edit = {hiddenSize: llama2.hiddenSize, headDim: llama2.headDim, qBias: llama2.qkvBias}

  it('Llama-2-7b, one UA head: 4096*128 = 524,288 = 0.0078%', () => {
    const m = modification('ua', parseHeadList('L2H26'), edit, total)
    expect(m.modified).toBe(524_288)
    expect(m.per_head).toBe(524_288)
    expect(formatPercent(m.percent)).toBe('0.0078%')
    expect(m.fraction).toBeCloseTo(524_288 / 6_738_415_616, 15)
  })

  it('Llama-2-7b, three UA heads: 1,572,864 = 0.0233%', () => {
    const m = modification('ua', parseHeadList('L2H26,L3H8,L0H0'), edit, total)
    expect(m.modified).toBe(1_572_864)
    expect(formatPercent(m.percent)).toBe('0.0233%')
  })

  it('SC counts the W_o columns (no bias); mean counts like UA', () => {
    expect(modification('sc', parseHeadList('L2H26'), edit, total).modified).toBe(524_288)
    expect(modification('sc', parseHeadList('L2H26'), edit, total).counted).toMatch(/columns of W_o/)
    expect(modification('mean', parseHeadList('L2H26'), edit, total).modified).toBe(524_288)
    expect(modification('mean', parseHeadList('L2H26'), edit, total).counted).toMatch(/like UA/)
  })

  it('with a q bias, UA and mean add the head\'s d_h bias entries, SC does not', () => {
    const qwen = shapeFromConfig(config('qwen2.5-7b.json'))
    const qEdit = {hiddenSize: qwen.hiddenSize, headDim: qwen.headDim, qBias: qwen.qkvBias}
    const qTotal = totalParameters(qwen).total
    expect(modification('ua', parseHeadList('L0H0'), qEdit, qTotal).modified).toBe(3584 * 128 + 128)
    expect(modification('mean', parseHeadList('L0H0'), qEdit, qTotal).modified).toBe(3584 * 128 + 128)
    expect(modification('sc', parseHeadList('L0H0'), qEdit, qTotal).modified).toBe(3584 * 128)
  })

  it('GQA: only the query head is counted, never the shared K/V head', () => {
    const l3 = shapeFromConfig(config('llama-3.1-8b.json'))
    const m = modification('ua', parseHeadList('L0H0'), {hiddenSize: 4096, headDim: l3.headDim, qBias: false}, totalParameters(l3).total)
    expect(m.modified).toBe(4096 * 128)
  })

  it('Describe facts: a fused qkv_proj (Phi-3) is named as where W_q lives, the count unchanged', () => {
    const facts = (names: string[], qProjBias: boolean) => ({hiddenSize: 3072, headDim: 96, qProjBias, parameters: names.map((name) => ({name}))})
    const phi3 = headEditFromFacts(facts(['model.layers.0.self_attn.qkv_proj.weight', 'model.layers.0.self_attn.o_proj.weight'], false))
    expect(phi3).toEqual({hiddenSize: 3072, headDim: 96, qBias: false, queryProjection: 'qkv_proj'})
    const m = modification('ua', parseHeadList('L0H0'), phi3, 3_821_079_552)
    expect(m.modified).toBe(3072 * 96)
    expect(m.counted).toMatch(/rows of W_q \(qkv_proj\.weight, its query part\) = 3072\*96 \(no q bias\)/)
    const qwen = headEditFromFacts(facts(['model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.q_proj.bias'], true))
    expect(qwen.queryProjection).toBe('q_proj')
    expect(modification('mean', parseHeadList('L0H0'), qwen, 1e9).counted).toMatch(/\+ its 96 q_proj\.bias entries, like UA/)
  })

  it('formats shares with four decimals, more below 0.001%', () => {
    expect(formatPercent(0.6244511659674115)).toBe('0.6245%')
    expect(formatPercent(12.5)).toBe('12.5000%')
    expect(formatPercent(0.00012345)).toBe('0.00012%')
    expect(formatPercent(0)).toBe('0%')
  })
})
