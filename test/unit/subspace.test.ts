import {execa} from 'execa'
import {resolve} from 'node:path'
import {describe, expect, it} from 'vitest'

import {
  type Matrix,
  centreColumns,
  datasetShips,
  fromRows,
  gram,
  leftSingularVectors,
  matrix,
  principalAngles,
  representation,
  subspaceShift,
  symmetricEigen,
} from '../../src/science/subspace.js'
import {python, repoRoot, skipIntegration} from '../helpers.js'
import {jacobiEigen} from './jacobi-oracle.js'

/** A small deterministic PRNG (mulberry32) and Gaussian (Box-Muller): same matrices everywhere. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function gaussian(rows: number, cols: number, seed: number, offset: number[] = []): Matrix {
  const u = rng(seed)
  const m = matrix(rows, cols)
  for (let i = 0; i < rows * cols; i += 1) {
    const z = Math.sqrt(-2 * Math.log(u() || 1e-300)) * Math.cos(2 * Math.PI * u())
    m.data[i] = z + (offset[i % cols] ?? 0)
  }

  return m
}

function toRows(m: Matrix): number[][] {
  return Array.from({length: m.rows}, (_, i) => Array.from(m.data.subarray(i * m.cols, (i + 1) * m.cols)))
}

function times(a: Matrix, b: Matrix): Matrix {
  const out = matrix(a.rows, b.cols)
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < b.cols; j++) {
      let s = 0
      for (let k = 0; k < a.cols; k++) s += a.data[i * a.cols + k] * b.data[k * b.cols + j]
      out.data[i * b.cols + j] = s
    }

  return out
}

/** Rotation by t degrees in the (i, j) plane of ℝ^n. */
function rotation(n: number, t: number, i = 0, j = 1): Matrix {
  const r = matrix(n, n)
  for (let k = 0; k < n; k++) r.data[k * n + k] = 1
  const c = Math.cos((t * Math.PI) / 180)
  const s = Math.sin((t * Math.PI) / 180)
  r.data[i * n + i] = c
  r.data[j * n + j] = c
  r.data[i * n + j] = -s
  r.data[j * n + i] = s
  return r
}

/** Rows with distinct norms 5, 2, 1 (+ a zero row), d = 4: u1 = e1, u2 = e2, u3 = e3. */
const DIAG = fromRows([
  [5, 0, 0, 0],
  [0, 2, 0, 0],
  [0, 0, 1, 0],
  [0, 0, 0, 0],
])

describe('symmetric eigendecomposition (Householder + implicit QL)', () => {
  it('diagonalises a random symmetric matrix: A V = V Λ, Vᵀ V = I, eigenvalues descending', () => {
    const n = 30
    const a = gram(gaussian(n, 12, 1)) // rank 12, 18 zero eigenvalues
    const {values, vectors, iterations} = symmetricEigen(a)
    expect(iterations).toBeLessThan(4 * n)
    for (let k = 1; k < n; k++) expect(values[k - 1]).toBeGreaterThanOrEqual(values[k])
    const av = times(a, vectors)
    const scale = values[0]
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        expect(Math.abs(av.data[i * n + j] - vectors.data[i * n + j] * values[j])).toBeLessThan(1e-12 * scale)
        let dot = 0
        for (let k = 0; k < n; k++) dot += vectors.data[k * n + i] * vectors.data[k * n + j]
        expect(Math.abs(dot - (i === j ? 1 : 0))).toBeLessThan(1e-13)
      }

    for (let k = 12; k < n; k++) expect(Math.abs(values[k])).toBeLessThan(1e-12 * scale)
  })

  /** max |A v - λ v| / |λ_max| over all pairs, and max |VᵀV - I|. */
  function residuals(a: Matrix, values: Float64Array, vectors: Matrix): {eigen: number; orthonormality: number} {
    const n = a.rows
    const av = times(a, vectors)
    const scale = Math.max(...Array.from(values, Math.abs))
    let eigen = 0
    let orthonormality = 0
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        eigen = Math.max(eigen, Math.abs(av.data[i * n + j] - vectors.data[i * n + j] * values[j]) / scale)
        let dot = 0
        for (let k = 0; k < n; k++) dot += vectors.data[k * n + i] * vectors.data[k * n + j]
        orthonormality = Math.max(orthonormality, Math.abs(dot - (i === j ? 1 : 0)))
      }

    return {eigen, orthonormality}
  }

  it('a random 300 × 300 symmetric matrix (full rank, both signs): A v = λ v to 1e-12·|λ|max, VᵀV = I to 1e-12', () => {
    const n = 300
    const g = gaussian(n, n, 11)
    const a = matrix(n, n)
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a.data[i * n + j] = g.data[i * n + j] + g.data[j * n + i]
    const {values, vectors} = symmetricEigen(a)
    for (let k = 1; k < n; k++) expect(values[k - 1]).toBeGreaterThanOrEqual(values[k])
    expect(values[0]).toBeGreaterThan(0)
    expect(values[n - 1]).toBeLessThan(0)
    const r = residuals(a, values, vectors)
    expect(r.eigen).toBeLessThan(1e-12)
    expect(r.orthonormality).toBeLessThan(1e-12)
    // The trace is the sum of the eigenvalues.
    let trace = 0
    for (let i = 0; i < n; i++) trace += a.data[i * n + i]
    expect(Math.abs(values.reduce((s, x) => s + x, 0) - trace)).toBeLessThan(1e-9 * values[0])
  })

  it('agrees with the cyclic Jacobi oracle: eigenvalues to 1e-12·λmax, vectors (same sign convention) to 1e-9', () => {
    // Gram matrices like the search's (rank-deficient, one dominant direction) and a full-rank one.
    for (const [rows, cols, seed, offset] of [[40, 24, 3, [5, -2, 1]], [60, 60, 4, []], [25, 8, 5, [0.1]]] as const) {
      const a = gram(gaussian(rows, cols, seed, [...offset]))
      const ours = symmetricEigen(a)
      const oracle = jacobiEigen(a)
      const scale = oracle.values[0]
      for (let k = 0; k < rows; k++) expect(Math.abs(ours.values[k] - oracle.values[k])).toBeLessThan(1e-12 * scale)
      // Eigenvectors are defined (up to sign) where the eigenvalue is well separated from the others.
      const rank = Math.min(rows, cols)
      for (let c = 0; c < rank; c++) {
        const gap = Math.min(c > 0 ? oracle.values[c - 1] - oracle.values[c] : Infinity, c + 1 < rows ? oracle.values[c] - oracle.values[c + 1] : Infinity)
        if (gap < 1e-3 * scale) continue
        for (let i = 0; i < rows; i++) expect(Math.abs(ours.vectors.data[i * rows + c] - oracle.vectors.data[i * rows + c]), `vector ${c}, entry ${i}`).toBeLessThan(1e-9)
      }
    }
  })

  it('is deterministic and handles 0×0, 1×1, diagonal and exactly repeated eigenvalues', () => {
    expect(symmetricEigen(matrix(0, 0)).values).toHaveLength(0)
    expect(Array.from(symmetricEigen(fromRows([[-3]])).values)).toEqual([-3])
    const d = symmetricEigen(fromRows([[1, 0, 0], [0, 3, 0], [0, 0, 2]]))
    expect(Array.from(d.values)).toEqual([3, 2, 1])
    expect(toRows(d.vectors)).toEqual([[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    const twice = [symmetricEigen(gram(gaussian(9, 4, 7))), symmetricEigen(gram(gaussian(9, 4, 7)))]
    expect(Array.from(twice[0].vectors.data)).toEqual(Array.from(twice[1].vectors.data))
    const iso = symmetricEigen(fromRows([[2, 0], [0, 2]]))
    expect(Array.from(iso.values)).toEqual([2, 2])
  })

  it('rejects non-square and non-finite input', () => {
    expect(() => symmetricEigen(matrix(2, 3))).toThrow(/square/)
    expect(() => symmetricEigen(fromRows([[1, Number.NaN], [Number.NaN, 1]]))).toThrow(/non-finite/)
  })
})

describe('left singular vectors', () => {
  it('of a diagonal matrix are the unit vectors, with singular values and rank', () => {
    const {vectors, singularValues, rank} = leftSingularVectors(DIAG, 3)
    expect(toRows(vectors)).toEqual([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    expect(Array.from(singularValues)).toEqual([5, 2, 1])
    expect(rank).toBe(3)
    expect(leftSingularVectors(matrix(3, 2), 1).rank).toBe(0)
  })

  it('centring removes the mean row: a shared offset no longer dominates the first direction', () => {
    // Every row = a big common offset + a small per-query signal along column 1.
    const m = fromRows([
      [10, 1, 0],
      [10, -1, 0],
      [10, 2, 0],
      [10, -2, 0],
    ])
    const raw = leftSingularVectors(m, 1).vectors.data
    for (const x of raw) expect(x).toBeCloseTo(0.5, 2) // ≈ the uniform vector: the mean
    const centred = leftSingularVectors(m, 1, {centre: true}).vectors.data
    const expected = [1, -1, 2, -2].map((x) => x / Math.sqrt(10))
    for (const [i, x] of Array.from(centred).entries()) expect(x).toBeCloseTo(expected[i], 12)
    expect(toRows(centreColumns(m)).map((r) => r[0])).toEqual([0, 0, 0, 0])
  })
})

describe('principal angles and dataset-level Ships', () => {
  it('identical matrices: 0°', () => {
    const m = gaussian(20, 8, 3, [4, -2, 1])
    for (const rMain of [1, 2, 3]) {
      for (const angleSum of ['nested', 'subspace'] as const) {
        const s = datasetShips(m, m, {rMain, angleSum})
        expect(s.score).toBeLessThan(1e-9)
        expect(s.angles).toHaveLength(rMain)
      }
    }
  })

  it('orthogonal column spaces: 90°', () => {
    const swapped = fromRows([
      [2, 0, 0, 0],
      [0, 5, 0, 0],
      [0, 0, 1, 0],
      [0, 0, 0, 0],
    ])
    expect(datasetShips(DIAG, swapped).score).toBeCloseTo(90, 12)
    // Disjoint query supports: every principal angle is 90°.
    const a = fromRows([[3, 1], [1, 2], [0, 0], [0, 0]])
    const b = fromRows([[0, 0], [0, 0], [3, 1], [1, 2]])
    expect(datasetShips(a, b, {rMain: 2, angleSum: 'subspace'}).angles.map((x) => Math.round(x * 1e10) / 1e10)).toEqual([90, 90])
  })

  it.each([0.5, 10, 30, 45, 60, 89.5])('a rotation of query space by %f° turns the first direction by it', (t) => {
    const rotated = times(rotation(4, t), DIAG)
    expect(datasetShips(DIAG, rotated).score).toBeCloseTo(t, 10)
    // Inside span(u1, u2): the 2-d span does not move (subspace sum 0); nested adds the r = 1 angle.
    expect(datasetShips(DIAG, rotated, {rMain: 2, angleSum: 'subspace'}).score).toBeCloseTo(0, 9)
    expect(datasetShips(DIAG, rotated, {rMain: 2, angleSum: 'nested'}).score).toBeCloseTo(t, 9)
    // Out of it (e1 toward e4, the zero row): r = 2 subspace angles are {0, t}.
    const out = times(rotation(4, t, 0, 3), DIAG)
    const sub = datasetShips(DIAG, out, {rMain: 2, angleSum: 'subspace'})
    expect(sub.angles[0]).toBeCloseTo(0, 9)
    expect(sub.angles[1]).toBeCloseTo(t, 9)
  })

  it('angles are sign-invariant: past 90° a rotation reads as 180 - t', () => {
    expect(datasetShips(DIAG, times(rotation(4, 150), DIAG)).score).toBeCloseTo(30, 10)
  })

  it('sign flips, scaling and rotations on the hidden side change nothing: 0°', () => {
    const m = gaussian(15, 6, 5, [3, 3, -1])
    const negated = matrix(m.rows, m.cols, m.data.map((x) => -x))
    const columnFlips = matrix(m.rows, m.cols, m.data.map((x, k) => (k % 2 === 0 ? -x : x)))
    const scaled = matrix(m.rows, m.cols, m.data.map((x) => 7.5 * x))
    const rightRotated = times(m, rotation(6, 33, 1, 4))
    for (const other of [negated, columnFlips, scaled, rightRotated]) {
      expect(datasetShips(m, other, {rMain: 3}).score).toBeLessThan(1e-8)
      expect(datasetShips(m, other, {rMain: 3, angleSum: 'subspace', centre: true}).score).toBeLessThan(1e-8)
    }

    // Explicitly flipped basis vectors span the same space.
    const u = leftSingularVectors(m, 2).vectors
    const flipped = matrix(u.rows, u.cols, u.data.map((x, k) => (k % 2 === 1 ? -x : x)))
    expect(Math.max(...principalAngles(u, flipped))).toBeLessThan(1e-9)
  })

  it('rank deficiency: r_main above the clean rank is refused; directions an ablation loses count 90°', () => {
    const rank1 = fromRows([[1, 2], [2, 4], [3, 6]])
    expect(() => datasetShips(rank1, rank1, {rMain: 2})).toThrow(/r_main = 2 exceeds the rank 1 of the clean representation matrix/)
    const clean = fromRows([[3, 0], [0, 1], [0, 0]])
    const collapsed = fromRows([[3, 0], [0, 0], [0, 0]])
    const s = datasetShips(clean, collapsed, {rMain: 2, angleSum: 'subspace'})
    expect(s.rank).toBe(1)
    expect(s.angles[0]).toBeCloseTo(0, 12)
    expect(s.angles[1]).toBe(90)
    // Centring a 2-row matrix leaves rank 1.
    expect(() => datasetShips(fromRows([[1, 0], [0, 1]]), fromRows([[1, 0], [0, 1]]), {rMain: 2, centre: true})).toThrow(/rank 1/)
  })

  it('representations are computed once and reused; centring must agree', () => {
    const m = gaussian(10, 5, 9, [2])
    const base = representation(m, {rMain: 2})
    expect(subspaceShift(base, representation(m, {rMain: 2}), {rMain: 2}).score).toBeLessThan(1e-9)
    expect(() => subspaceShift(base, representation(m, {rMain: 2, centre: true}), {rMain: 2})).toThrow(/same centring/)
    expect(() => datasetShips(m, matrix(9, 5, gaussian(9, 5, 1).data))).toThrow(/base has 10 queries, ablated has 9/)
  })
})

describe.skipIf(skipIntegration)("against torch's SVD (float64)", () => {
  it('same singular values, same subspaces (projectors to 1e-8), same principal angles (to 1e-8°)', async () => {
    // Hidden-state-like: a strong shared offset (the mean activation) plus per-query variation;
    // N > d, so the Gram matrix is rank-deficient; the ablated matrix is a perturbation.
    const offset = [6, -3, 2, 0, 1, 0, -1, 4]
    const pairs = [0, 1].map((seed) => {
      const clean = gaussian(40, 24, 100 + seed, offset)
      const noise = gaussian(40, 24, 200 + seed)
      const ablated = matrix(40, 24, clean.data.map((x, k) => x + 0.4 * noise.data[k]))
      return {clean, ablated}
    })
    const rs = [1, 2, 3]
    const {stdout} = await execa(python, [resolve(repoRoot, 'test/fixtures/torch_subspace.py')], {
      input: JSON.stringify({pairs: pairs.map((p) => ({clean: toRows(p.clean), ablated: toRows(p.ablated)})), r: rs}),
      cwd: repoRoot,
    })
    const results = (JSON.parse(stdout) as {results: {r: number; u_clean: number[][]; u_ablated: number[][]; s_clean: number[]; s_ablated: number[]; angles: number[]}[]}).results
    expect(results).toHaveLength(pairs.length * rs.length)
    let checkedAngles = 0
    for (const [i, ref] of results.entries()) {
      const pair = pairs[Math.floor(i / rs.length)]
      const r = ref.r
      for (const [which, m, refU, refS] of [
        ['clean', pair.clean, ref.u_clean, ref.s_clean],
        ['ablated', pair.ablated, ref.u_ablated, ref.s_ablated],
      ] as const) {
        const ours = leftSingularVectors(m, r)
        for (let c = 0; c < r; c++) expect(Math.abs(ours.singularValues[c] - refS[c]) / refS[c], `${which} σ${c + 1}`).toBeLessThan(1e-10)
        // Same span: the projectors U Uᵀ agree entrywise (signs and bases within it may differ).
        for (let a = 0; a < m.rows; a++)
          for (let b = 0; b < m.rows; b++) {
            let ourP = 0
            let refP = 0
            for (let c = 0; c < r; c++) {
              ourP += ours.vectors.data[a * r + c] * ours.vectors.data[b * r + c]
              refP += refU[a][c] * refU[b][c]
            }

            expect(Math.abs(ourP - refP), `${which} r=${r} P[${a},${b}]`).toBeLessThan(1e-8)
          }
      }

      const s = datasetShips(pair.clean, pair.ablated, {rMain: r, angleSum: 'subspace'})
      for (const [k, angle] of s.angles.entries()) {
        // arccos in torch loses digits near 0°: compare where both are well conditioned.
        if (ref.angles[k] > 0.5) {
          expect(Math.abs(angle - ref.angles[k]), `r=${r} angle ${k}`).toBeLessThan(1e-8)
          checkedAngles++
        }
      }

      // nested, r = 1 is the authors' single angle.
      if (r === 1) expect(Math.abs(datasetShips(pair.clean, pair.ablated).score - ref.angles[0])).toBeLessThan(1e-8)
    }

    expect(checkedAngles).toBeGreaterThanOrEqual(8)
  })
})
