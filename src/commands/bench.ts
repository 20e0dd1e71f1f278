import {Flags} from '@oclif/core'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'

import {benchTable} from '../bench/report.js'
import {type BenchResult, runBench} from '../bench/run.js'
import {SaharaCommand} from '../cli/base.js'
import {ablationFlags, datasetFlag, modelFlag, parseEps, resolveModelAndDataset} from '../cli/ablation-flags.js'
import {sidecarFlags, withSidecar} from '../cli/sidecar-session.js'
import {parseMemoryBudget} from '../jobs/engine.js'
import {SCORES, type ScoreKind} from '../jobs/search-scoring.js'
import type {Method, Template} from '../jobs/ships.js'

export default class Bench extends SaharaCommand {
  static override description = `Benchmark the ablation engines on one sidecar: a full Ships scan and one Sahara step, each with the naive
engine (one forward per prompt and head, as the authors' code) and the fast one, in the same run. Reports heads x
prompts per second, the speed-up, the wall-time split (sidecar compute, transfer, TypeScript scoring), achieved
FLOP/s against the dense-matmul peak measured on the same device, and whether the engines agree (Ships KL, top-10,
chosen head). docs/PERFORMANCE.md has the figures and how to reproduce them.`

  static override examples = [
    '<%= config.bin %> bench',
    '<%= config.bin %> bench --model organism --dataset jailbreakbench --json',
    '<%= config.bin %> bench --rounds 5',
    '<%= config.bin %> bench --model runs/random-llama-100m --prompts 8',
  ]

  static override flags = {
    model: modelFlag,
    dataset: Flags.string({char: 'd', description: datasetFlag.description, default: 'jailbreakbench'}),
    prompts: Flags.integer({char: 'n', description: 'the dataset\'s first N prompts (default: all)', min: 1}),
    method: ablationFlags.method,
    eps: ablationFlags.eps,
    template: ablationFlags.template,
    'memory-budget': Flags.string({description: 'GiB per forward for the fast engine, or auto', default: 'auto', helpValue: 'GIB'}),
    'search-score': Flags.string({description: 'the Sahara step\'s score', options: [...SCORES], default: 'angles'}),
    rounds: Flags.integer({
      char: 'r',
      description: 'measure each workload this many times, naive then fast back to back, and report the round with the median ratio (a shared machine\'s speed drifts)',
      default: 1,
      min: 1,
    }),
    out: Flags.string({char: 'o', description: 'keep every run\'s output in this folder (default: a temporary folder, removed)'}),
    ...sidecarFlags,
  }

  async run(): Promise<BenchResult> {
    const {flags} = await this.parse(Bench)
    this.quiet = flags.quiet
    const eps = parseEps(flags.eps)
    if (typeof eps === 'string') this.error(eps, {exit: 2})
    const memoryBudgetGib = parseMemoryBudget(flags['memory-budget'])
    if (typeof memoryBudgetGib === 'string') this.error(memoryBudgetGib, {exit: 2})

    let model, dataset
    try {
      ;({model, dataset} = resolveModelAndDataset(flags))
    } catch (error) {
      this.fail(error)
    }

    const prompts = Math.min(flags.prompts ?? dataset.prompts.length, dataset.prompts.length)
    const outDir = flags.out ? resolve(flags.out) : mkdtempSync(join(tmpdir(), 'sahara-bench-'))
    const log = (m: string) => this.progress(m)
    let result: BenchResult
    try {
      result = await withSidecar(model, {...flags, log}, (client) =>
        runBench(
          client,
          {model, dataset, method: flags.method as Method, eps, template: flags.template as Template, prompts, memoryBudgetGib, score: flags['search-score'] as ScoreKind},
          outDir,
          log,
          (d, t, what) => this.advance(d, t, what, 'phases'),
          flags.rounds,
        ),
      )
    } catch (error) {
      this.fail(error)
    } finally {
      if (!flags.out) rmSync(outDir, {recursive: true, force: true})
    }

    for (const line of benchTable(result)) this.log(line)
    return result
  }
}
