import {Flags} from '@oclif/core'

import {SaharaCommand} from '../cli/base.js'
import {ablationFlags, datasetFlag, engineFlags, logprobSupportFlag, modelFlag, parseEngineFlags, parseEps, parseSmoothing, resolveModelAndDataset} from '../cli/ablation-flags.js'
import {sidecarFlags, withSidecar} from '../cli/sidecar-session.js'
import {type SearchParams, type SearchSummary, describeScore, formatScore, runSearch} from '../jobs/search.js'
import {SCORES, type ScoreKind} from '../jobs/search-scoring.js'
import {SearchStateError, precheckStoredSteps} from '../jobs/search-steps.js'
import {type Method, type Template, formatEps} from '../jobs/ships.js'
import {modelLabel} from '../models.js'
import {formatHead} from '../science/heads.js'
import {DEFAULT_SMOOTHING} from '../science/kl.js'
import {ANGLE_SUMS, type AngleSum} from '../science/subspace.js'

export default class Search extends SaharaCommand {
  static override description = `Sahara: greedy search for a group of safety heads (METHOD.md, paper Algorithm 1). Each step ablates the
group found so far plus one more head, for every head not in it, and keeps the head that moves the dataset most:
by default the principal angle between the first left singular vectors of the clean and ablated representation
matrices (final-norm last-token hidden states; dataset-level Ships, paper Eq. 11), or the mean KL over queries
(--score kl). Writes OUT/search.jsonl (every step's full score table, fsynced as each step ends) and
OUT/summary.json. Re-run with more --steps to continue from the stored steps.`

  static override examples = [
    '<%= config.bin %> search --model organism --dataset jailbreakbench --steps 3',
    '<%= config.bin %> search --model organism --dataset jailbreakbench --steps 3 --r-main 2 --centre --json',
    '<%= config.bin %> search --model organism --dataset jailbreakbench --steps 3 --score kl --out runs/search-kl',
    '<%= config.bin %> search --model ./my-7b --dataset jailbreakbench --steps 3 --score kl --logprob-support 256',
    '<%= config.bin %> search --model ./my-model --dataset advbench --steps 3 --prefilter atp:32 --engine fast --memory-budget 20',
  ]

  static override flags = {
    model: modelFlag,
    dataset: datasetFlag,
    ...ablationFlags,
    steps: Flags.integer({char: 's', description: 'search size S: heads in the group (the paper: best ~3, not over 5)', default: 3, min: 1}),
    score: Flags.string({description: 'angles: dataset-level Ships, principal angles of the representation (the paper); kl: mean KL(clean || ablated) over queries', options: [...SCORES], default: 'angles'}),
    'r-main': Flags.integer({description: 'leading singular directions compared (score angles; the authors\' code: 1)', default: 1, min: 1}),
    centre: Flags.boolean({description: 'subtract the mean representation (over queries) before the SVD (score angles)', default: false}),
    'angle-sum': Flags.string({
      description: 'with --r-main > 1: nested = sum over r of the largest angle between the first-r spans (METHOD.md); subspace = sum of the r_main principal angles',
      options: [...ANGLE_SUMS],
      default: 'nested',
    }),
    smoothing: Flags.string({description: 'KL smoothing for --score kl (as in ships; 0 = exact KL)', default: String(DEFAULT_SMOOTHING)}),
    'logprob-support': logprobSupportFlag(' (--score kl only)'),
    limit: Flags.integer({description: 'only the first N prompts', min: 1}),
    out: Flags.string({char: 'o', description: 'output folder (default runs/search-<model>-<dataset>-<method>-<eps>[-options])'}),
    restart: Flags.boolean({description: 'discard the steps stored in OUT instead of continuing from them', default: false}),
    ...engineFlags,
    ...sidecarFlags,
  }

  async run(): Promise<SearchSummary> {
    const {flags} = await this.parse(Search)
    this.quiet = flags.quiet
    const eps = parseEps(flags.eps)
    if (typeof eps === 'string') this.error(eps, {exit: 2})
    const smoothing = parseSmoothing(flags.smoothing)
    if (typeof smoothing === 'string') this.error(smoothing, {exit: 2})
    const engine = parseEngineFlags(flags)
    if (typeof engine === 'string') this.error(engine, {exit: 2})
    if (flags['logprob-support'] > 0 && flags.score !== 'kl') this.error(`--logprob-support applies to --score kl only (--score ${flags.score} reads hidden states)`, {exit: 2})
    if (engine.prefilter && flags.steps > engine.prefilter.k) this.error(`--steps ${flags.steps} exceeds the ${engine.prefilter.k} heads --prefilter atp:${engine.prefilter.k} keeps`, {exit: 2})

    let model, dataset
    try {
      ;({model, dataset} = resolveModelAndDataset(flags))
    } catch (error) {
      this.fail(error)
    }

    const params: SearchParams = {
      dataset,
      method: flags.method as Method,
      eps,
      template: flags.template as Template,
      steps: flags.steps,
      score: flags.score as ScoreKind,
      rMain: flags['r-main'],
      centre: flags.centre,
      angleSum: flags['angle-sum'] as AngleSum,
      smoothing,
      ...(flags['logprob-support'] > 0 ? {logprobSupport: flags['logprob-support']} : {}),
      limit: flags.limit,
      restart: flags.restart,
      ...engine,
    }
    const scoreSuffix = params.score === 'kl' ? `-kl${params.logprobSupport ? `-support${params.logprobSupport}` : ''}` : `${params.rMain === 1 ? '' : `-r${params.rMain}`}${params.rMain > 1 && params.angleSum !== 'nested' ? `-${params.angleSum}` : ''}${params.centre ? '-centred' : ''}`
    const suffix = `${scoreSuffix}${params.prefilter ? `-atp${params.prefilter.k}` : ''}`
    const outDir = this.outputFolder(flags.out ?? `runs/search-${modelLabel(model.name)}-${dataset.name}-${params.method}-${formatEps(eps)}${suffix}`)
    const log = (m: string) => this.progress(m)
    let summary: SearchSummary
    try {
      // Refuse stored steps made with other settings before starting a sidecar (local models).
      if (model.kind !== 'remote') precheckStoredSteps(outDir, model.source, params, log)
      summary = await withSidecar(model, {...flags, log}, (client) => runSearch(model, params, {client, outDir, log, progress: (d, t, what) => this.advance(d, t, what, 'steps')}))
    } catch (error) {
      if (error instanceof SearchStateError) this.error(error.message, {exit: 2})
      if (error instanceof RangeError && /r_main/.test(error.message)) this.error(error.message, {exit: 2})
      this.fail(error)
    }

    this.log(`Sahara: ${summary.model} on ${summary.dataset} (${summary.n_queries} queries), ${summary.method} eps=${formatEps(summary.eps)}, score ${describeScore(params)}`)
    this.log('')
    for (const s of summary.steps) {
      const next = s.runner_up ? `   next: ${formatHead(s.runner_up)} ${formatScore(s.runner_up.score, summary.score)}` : ''
      this.log(`step ${s.step}  ${formatHead(s.head).padEnd(8)} ${formatScore(s.score, summary.score)}${next}${summary.computed_steps.includes(s.step) ? '' : '   (stored)'}`)
    }

    this.log('')
    this.log(`group: ${summary.group.map(formatHead).join(', ')}; ${summary.computed_steps.length} steps computed, ${summary.resumed_steps} read back, in ${summary.timings.total_s} s`)
    this.log(`written to ${outDir}/{search.jsonl,summary.json}`)
    return summary
  }
}
