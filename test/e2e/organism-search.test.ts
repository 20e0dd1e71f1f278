/**
 * Sahara on the embedded organism (planted safety heads L1H2 and L2H0, models/organism/README.md),
 * JailbreakBench, UA: the search must find the planted heads. The default score (principal angle,
 * r_main = 1, no centring, as the authors' code) and the mean-KL score (--score kl) both run;
 * docs/SEARCH.md has the numbers for every option.
 */
import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import type {SearchSummary} from '../../src/jobs/search.js'
import {formatHead} from '../../src/science/heads.js'
import {cli, skipIntegration} from '../helpers.js'

const PLANTED = ['L1H2', 'L2H0']

describe.skipIf(skipIntegration)('organism: Sahara finds the planted heads', {timeout: 600_000}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'sahara-organism-search-'))

  it('search --steps 3 (UA, angles, r_main 1): the group holds the planted heads', async () => {
    const result = await cli(['search', '--model', 'organism', '--dataset', 'jailbreakbench', '--steps', '3', '--out', join(dir, 'angles'), '--json'], {timeoutMs: 540_000})
    expect(result.exitCode, result.stderr).toBe(0)
    const summary = JSON.parse(result.stdout) as SearchSummary
    const group = summary.group.map(formatHead)
    process.stderr.write(`organism Sahara group (angles, r_main 1): ${group.join(', ')}\n`)
    expect(group).toHaveLength(3)
    expect(group.filter((h) => PLANTED.includes(h)).length).toBeGreaterThanOrEqual(1)
    // Measured: both planted heads, in the first two steps (docs/SEARCH.md).
    expect(group.slice(0, 2).sort()).toEqual(PLANTED)
    // The representation is dominated by the mean activation (why r_main = 1 is fragile).
    expect(summary.clean_representation?.mean_energy_share).toBeGreaterThan(0.5)
  })

  it('search --score kl --steps 2: the planted pair first', async () => {
    const result = await cli(['search', '--model', 'organism', '--dataset', 'jailbreakbench', '--steps', '2', '--score', 'kl', '--out', join(dir, 'kl'), '--json'], {timeoutMs: 540_000})
    expect(result.exitCode, result.stderr).toBe(0)
    const summary = JSON.parse(result.stdout) as SearchSummary
    expect(summary.group.map(formatHead).sort()).toEqual(PLANTED)
  })
})
