import {Flags} from '@oclif/core'

import {SaharaCommand} from '../cli/base.js'
import {ablationFlags, datasetFlag, engineFlags, logprobSupportFlag, modelFlag, parseEngineFlags, parseEps, parseSmoothing, resolveModelAndDataset} from '../cli/ablation-flags.js'
import {sidecarFlags, withSidecar} from '../cli/sidecar-session.js'
import {type ShipsSummary, type Method, type Template, formatEps, runShips} from '../jobs/ships.js'
import {modelLabel} from '../models.js'
import {formatHead} from '../science/heads.js'
import {DEFAULT_SMOOTHING} from '../science/kl.js'

export default class Ships extends SaharaCommand {
  static override description = `Query-level Ships: for every query and every head, KL(clean || head ablated) of the next-token distribution
at the last prompt position, over the full vocabulary (METHOD.md, paper Eq. 9). Writes OUT/ships.jsonl (one line
per query with its top-k heads) and OUT/summary.json (all heads ranked by mean KL, with how many queries have
each head in their top-k).`

  static override examples = [
    '<%= config.bin %> ships --model organism --dataset jailbreakbench',
    '<%= config.bin %> ships --model organism --dataset ../shared/data/jailbreakbench.json --json',
    '<%= config.bin %> ships --model ./my-model --dataset prompts.csv --method sc --eps 1e-4 --top-k 5 --out runs/sc',
    '<%= config.bin %> ships --model ./my-model --dataset advbench --prefilter atp:64 --memory-budget 20',
  ]

  static override flags = {
    model: modelFlag,
    dataset: datasetFlag,
    ...ablationFlags,
    'top-k': Flags.integer({description: 'heads kept per query', default: 10, min: 1}),
    smoothing: Flags.string({description: 'added to both distributions in the KL, no renormalisation (the authors\' code); 0 = exact KL', default: String(DEFAULT_SMOOTHING)}),
    'logprob-support': logprobSupportFlag(),
    limit: Flags.integer({description: 'only the first N prompts', min: 1}),
    out: Flags.string({char: 'o', description: 'output folder (default runs/ships-<model>-<dataset>-<method>-<eps>)'}),
    show: Flags.integer({description: 'heads shown in the table', default: 10, min: 1}),
    ...engineFlags,
    ...sidecarFlags,
  }

  async run(): Promise<ShipsSummary> {
    const {flags} = await this.parse(Ships)
    this.quiet = flags.quiet
    const eps = parseEps(flags.eps)
    if (typeof eps === 'string') this.error(eps, {exit: 2})
    const smoothing = parseSmoothing(flags.smoothing)
    if (typeof smoothing === 'string') this.error(smoothing, {exit: 2})
    const engine = parseEngineFlags(flags)
    if (typeof engine === 'string') this.error(engine, {exit: 2})

    let model, dataset
    try {
      ;({model, dataset} = resolveModelAndDataset(flags))
    } catch (error) {
      this.fail(error)
    }

    const method = flags.method as Method
    const outDir = this.outputFolder(flags.out ?? `runs/ships-${modelLabel(model.name)}-${dataset.name}-${method}-${formatEps(eps)}`)
    let summary: ShipsSummary
    try {
      summary = await withSidecar(model, {...flags, log: (m) => this.progress(m)}, (client) =>
        runShips(model, {dataset, method, eps, template: flags.template as Template, topK: flags['top-k'], smoothing, logprobSupport: flags['logprob-support'], limit: flags.limit, ...engine}, {
          client,
          outDir,
          log: (m) => this.progress(m),
          progress: (d, t, what) => this.advance(d, t, what, 'requests'),
        }),
      )
    } catch (error) {
      this.fail(error)
    }

    this.log(`Ships: ${summary.model} on ${summary.dataset} (${summary.n_queries} queries), ${summary.method} eps=${formatEps(summary.eps)}, ${summary.template} template`)
    if (summary.prefilter) this.log(`pre-filter ${summary.prefilter.prefilter}: ${summary.prefilter.scored.length} heads scored exactly, the others have no KL`)
    this.log('')
    this.log('rank  head      mean KL        top-k count')
    for (const [i, h] of summary.heads.slice(0, flags.show).entries()) {
      this.log(`${String(i + 1).padStart(4)}  ${formatHead(h).padEnd(8)}  ${h.mean_kl.toExponential(4).padStart(11)}    ${h.topk_count}/${summary.n_queries}`)
    }

    this.log('')
    const t = summary.timings
    this.log(`${summary.heads.length} heads ranked in ${t.total_s} s (${t.engine} engine, sidecar compute ${t.sidecar_stats.compute_s.toFixed(2)} s); written to ${outDir}/{ships.jsonl,summary.json}`)
    return summary
  }
}
