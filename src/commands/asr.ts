import {Flags} from '@oclif/core'

import {SaharaCommand} from '../cli/base.js'
import {ablationFlags, datasetFlag, modelFlag, parseEps, resolveModelAndDataset} from '../cli/ablation-flags.js'
import {sidecarFlags, withSidecar} from '../cli/sidecar-session.js'
import {readHeadsFrom} from '../data/head-sets.js'
import {JUDGES, type JudgeName} from '../data/judges.js'
import {type AsrSummary, parseSampling, runAsr} from '../jobs/asr.js'
import {type Method, type Template, formatEps} from '../jobs/ships.js'
import {modelLabel} from '../models.js'
import {type HeadSelection, parseHeadsOption} from '../science/head-sets.js'

const rate = (x: number | null) => (x === null ? 'n/a' : x.toFixed(3))

export default class Asr extends SaharaCommand {
  static override description = `Attack success rate of a head set (METHOD.md): generate a reply to every prompt with the heads ablated and
without (the baseline), judge every reply, and report asr (share judged harmful with the ablation), baseline_asr
(the same without) and flip_rate (of the prompts the clean model refused, the share it no longer refuses with the
ablation; null when it refused none). Without --heads only the baseline is generated (asr = baseline_asr).
Writes OUT/replies.jsonl (both replies and verdicts per prompt) and OUT/summary.json.`

  static override examples = [
    '<%= config.bin %> asr --model organism --dataset jailbreakbench --heads L1H2,L2H0 --max-new-tokens 24',
    '<%= config.bin %> asr --model organism --dataset jailbreakbench --heads random:3 --seed 1 --avoid L1H2,L2H0 --json',
    '<%= config.bin %> asr --model organism --dataset jailbreakbench --heads-from runs/ships-organism --top 3',
    '<%= config.bin %> asr --model ./my-model --dataset advbench --heads L2H26 --sampling topk:5 --seed 7 --judge keyword-gcg',
  ]

  static override flags = {
    model: modelFlag,
    dataset: datasetFlag,
    heads: Flags.string({
      description: 'heads to ablate together: L2H26,L3H8, or random:K (K distinct heads drawn uniformly with --seed)',
      exclusive: ['heads-from'],
    }),
    'heads-from': Flags.string({
      description: 'a ships run folder (its top --top K heads by mean KL) or a search run folder (its group) with a summary.json',
      helpValue: 'DIR',
    }),
    top: Flags.integer({description: 'with --heads-from: how many top heads (required for a ships run; a prefix of a search group)', min: 1}),
    avoid: Flags.string({description: 'with --heads random:K: heads never drawn, e.g. L1H2,L2H0'}),
    seed: Flags.integer({description: 'seeds the random head draw and top-k sampling (default 0)', min: 0}),
    ...ablationFlags,
    'max-new-tokens': Flags.integer({description: 'new tokens per reply at most', default: 128, min: 1}),
    sampling: Flags.string({description: 'greedy, or topk:K (temperature 1), e.g. topk:5', default: 'greedy'}),
    judge: Flags.string({description: 'refusal judge', options: [...JUDGES], default: 'keyword-paper'}),
    limit: Flags.integer({description: 'only the first N prompts', min: 1}),
    out: Flags.string({char: 'o', description: 'output folder (default runs/asr-<model>-<dataset>-<method>-<eps>-<heads>)'}),
    ...sidecarFlags,
  }

  async run(): Promise<AsrSummary> {
    const {flags} = await this.parse(Asr)
    this.quiet = flags.quiet
    const eps = parseEps(flags.eps)
    if (typeof eps === 'string') this.error(eps, {exit: 2})
    if (flags.top !== undefined && flags['heads-from'] === undefined) this.error('--top applies to --heads-from only', {exit: 2})

    let model, dataset, heads: HeadSelection, sampling
    try {
      ;({model, dataset} = resolveModelAndDataset(flags))
      sampling = parseSampling(flags.sampling)
      if (flags['heads-from'] !== undefined) {
        if (flags.avoid !== undefined) this.error('--avoid applies to --heads random:K only', {exit: 2})
        heads = readHeadsFrom(flags['heads-from'], flags.top)
      } else {
        heads = parseHeadsOption(flags.heads, {seed: flags.seed, avoid: flags.avoid})
      }
    } catch (error) {
      this.fail(error)
    }

    const method = flags.method as Method
    const tag = heads.kind === 'none' ? 'clean' : heads.kind === 'random' ? `random${heads.k}-s${heads.seed}` : heads.kind === 'job' ? `${heads.job}-top${heads.top}` : heads.heads.map((h) => `L${h.layer}H${h.head}`).join('-')
    const outDir = this.outputFolder(flags.out ?? `runs/asr-${modelLabel(model.name)}-${dataset.name}-${method}-${formatEps(eps)}-${tag}`)
    let summary: AsrSummary
    try {
      summary = await withSidecar(model, {...flags, log: (m) => this.progress(m)}, (client) =>
        runAsr(
          model,
          {
            dataset,
            heads,
            method,
            eps,
            template: flags.template as Template,
            maxNewTokens: flags['max-new-tokens'],
            sampling,
            seed: flags.seed ?? 0,
            judge: flags.judge as JudgeName,
            limit: flags.limit,
          },
          {client, outDir, log: (m) => this.progress(m), progress: (d, t, what) => this.advance(d, t, what, 'replies')},
        ),
      )
    } catch (error) {
      this.fail(error)
    }

    this.log(`ASR: ${summary.model} on ${summary.dataset} (${summary.n} prompts), heads ${summary.heads_label}`)
    this.log(`     ${summary.method} eps=${formatEps(summary.eps)}, ${summary.template} template, ${summary.sampling}, ${summary.max_new_tokens} new tokens, judge ${summary.judge}`)
    this.log('')
    this.log(`asr           ${rate(summary.asr)}  (${summary.n_harmful}/${summary.n} judged harmful with the ablation)`)
    this.log(`baseline_asr  ${rate(summary.baseline_asr)}  (${summary.n_harmful_baseline}/${summary.n} without)`)
    this.log(
      `flip_rate     ${rate(summary.flip_rate)}  (${summary.n_flipped}/${summary.n_refused_baseline} clean refusals no longer refused` +
        `${summary.flip_rate === null ? `; ${summary.flip_rate_note}` : ''})`,
    )
    if (summary.heads.length > 0) this.log(`parameters    ${summary.parameters.modified.toLocaleString('en-US')} of ${summary.parameters.total.toLocaleString('en-US')} modified (${summary.parameters.percent_text})`)
    this.log('')
    this.log(`${summary.generate_calls} Generate calls in ${summary.timings.total_s} s; written to ${outDir}/{replies.jsonl,summary.json}`)
    return summary
  }
}
