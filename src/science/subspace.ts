/**
 * Dataset-level Ships (METHOD.md "Ships for a dataset", paper Eq. 11): how far an ablation turns
 * the dominant query-space directions of a dataset's representation matrix.
 *
 * M is N × d: one row per query, the final-norm hidden state of its last prompt token. Its SVD
 * M = U Σ Vᵀ gives left singular vectors U in ℝ^N (query space). The score compares the first
 * r_main of them for the clean model (U_θ) and the ablated one (U_A) by principal angles, in
 * degrees.
 *
 * Linear algebra: written here, no dependency. U is taken from the N × N Gram matrix G = M Mᵀ,
 * whose eigenvectors are exactly the left singular vectors of M (G = U Σ² Uᵀ), by Householder
 * tridiagonalisation and implicit-shift QL in float64 (`symmetricEigen`). Why not a library: N
 * (queries) is small — 100 for JailbreakBench, ~500 for AdvBench — while d may be 4096, so the
 * N × N Gram is the small side; orthogonal transformations only (eigenvalues to a few ulp of
 * ‖G‖), simple to verify against an independent oracle (the tests keep a cyclic Jacobi for
 * that, and compare with torch), and deterministic (a fixed operation order, no BLAS, so the
 * same input gives the same bits on every machine — the search's argmax must not depend on
 * the BLAS a host has). Cost ≈ 9N³ flops: ~0.2 s at N = 520 (the cyclic Jacobi used before took
 * ~10 s). The few singular values of the r × r matrices behind the principal angles come from
 * the same routine.
 *
 * Conventions (all documented choices, tested in test/unit/subspace.test.ts):
 * - Angles are sign-invariant (they depend on spans only); vectors are still returned with a
 *   fixed sign (largest-magnitude entry positive) so outputs are reproducible.
 * - Principal angles are computed from cosines (σ of U_θᵀU_A) and sines (σ of the part of U_A
 *   outside span U_θ), arcsin for small angles and arccos for large, so both 0° and 90° are
 *   accurate (arccos alone loses half the digits near 0°).
 * - Rank deficiency: directions with σ² ≤ N·ε·σ₁² (ε = 2.2e-16, times 10) are undefined. The
 *   clean (base) matrix must have rank ≥ r_main (checked, RangeError). An ablated matrix of
 *   lower rank has lost directions the clean model had: each missing direction counts as 90°.
 * Pure functions, no I/O.
 */

const EPS = 2.220446049250313e-16
const DEG = 180 / Math.PI

/** A dense row-major matrix of float64 (rows × cols). */
export interface Matrix {
  rows: number
  cols: number
  data: Float64Array
}

export function matrix(rows: number, cols: number, data?: ArrayLike<number>): Matrix {
  if (!(Number.isInteger(rows) && rows >= 0 && Number.isInteger(cols) && cols >= 0)) {
    throw new RangeError(`matrix shape must be non-negative integers, got ${rows} × ${cols}`)
  }

  const out = new Float64Array(rows * cols)
  if (data !== undefined) {
    if (data.length !== rows * cols) throw new RangeError(`matrix ${rows} × ${cols} needs ${rows * cols} values, got ${data.length}`)
    out.set(data)
  }

  return {rows, cols, data: out}
}

/** From nested arrays (tests, small cases). */
export function fromRows(rows: number[][]): Matrix {
  const cols = rows[0]?.length ?? 0
  for (const r of rows) if (r.length !== cols) throw new RangeError('fromRows: rows of different lengths')
  return matrix(rows.length, cols, rows.flat())
}

export interface Eigen {
  /** Eigenvalues, descending. */
  values: Float64Array
  /** Eigenvectors as columns (n × n, row-major), in the order of `values`, each with its largest-magnitude entry positive. */
  vectors: Matrix
  /** QL iterations (implicit shifts) summed over all eigenvalues. */
  iterations: number
}

/** √(a² + b²) without overflow or underflow in the squares. */
function pythag(a: number, b: number): number {
  const x = Math.abs(a)
  const y = Math.abs(b)
  if (x > y) return x * Math.sqrt(1 + (y / x) * (y / x))
  return y === 0 ? 0 : y * Math.sqrt(1 + (x / y) * (x / y))
}

/**
 * Eigendecomposition of a symmetric matrix, float64, in two textbook stages (Golub & Van Loan
 * §8.3; the EISPACK tred2/tql2 pair):
 *
 * 1. Householder tridiagonalisation: for i = n-1 .. 1 a reflector P_i = I - u uᵀ/h (u supported
 *    on 0..i-1) zeroes row i left of the subdiagonal, so A = Q T Qᵀ with T tridiagonal and
 *    Q = P_{n-1} ··· P_1. The symmetric updates read and write rows only (lower triangle), and Q
 *    is accumulated row by row, so every inner loop runs over contiguous memory.
 * 2. QL with implicit Wilkinson-like shifts on T, each eigenvalue deflated when its off-diagonal
 *    entry falls below ε (|d_m| + |d_{m+1}|); the Givens rotations are applied to Qᵀ's rows.
 *
 * O(n³) with small constants (≈ 9n³ flops with vectors): about 0.1-0.3 s at n = 520 on one core,
 * where cyclic Jacobi took ~10 s. Orthogonal transformations only, so backward stable:
 * eigenvalues to a few ulp of ‖A‖, eigenvectors orthonormal to ~n·ε. Deterministic: a fixed
 * operation order, no BLAS. Only the lower triangle is read.
 */
export function symmetricEigen(input: Matrix, maxIterationsPerValue = 60): Eigen {
  const n = input.rows
  if (input.cols !== n) throw new RangeError(`symmetricEigen needs a square matrix, got ${input.rows} × ${input.cols}`)
  // a: the lower triangle of A, row-major; later row i holds reflector i (u in columns 0..i-1).
  const a = new Float64Array(n * n)
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const v = input.data[i * n + j]
      if (!Number.isFinite(v)) throw new RangeError(`symmetricEigen: non-finite entry at (${i}, ${j})`)
      a[i * n + j] = v
    }
  }

  const d = new Float64Array(n) // diagonal of T
  const e = new Float64Array(n) // e[i]: T[i][i-1] (e[0] = 0)
  const h = new Float64Array(n) // h[i]: reflector i's uᵀu/2 (0 = no reflection)
  const p = new Float64Array(n)

  // ---- 1. Householder: row i of the leading (i+1) × (i+1) block -> (…, 0, e[i], d[i]) ----
  for (let i = n - 1; i > 0; i--) {
    const ri = i * n
    const l = i - 1
    let scale = 0
    for (let k = 0; k < i; k++) scale += Math.abs(a[ri + k])
    if (l === 0 || scale === 0) {
      e[i] = a[ri + l]
      continue
    }

    let sigma = 0
    for (let k = 0; k < i; k++) {
      a[ri + k] /= scale
      sigma += a[ri + k] * a[ri + k]
    }

    const f = a[ri + l]
    const g = f >= 0 ? -Math.sqrt(sigma) : Math.sqrt(sigma)
    e[i] = scale * g
    const hi = sigma - f * g
    h[i] = hi
    a[ri + l] = f - g // u = row i, columns 0..i-1
    // p = A u / h over the leading i × i block, from its lower triangle, row by row.
    p.fill(0, 0, i)
    for (let j = 0; j < i; j++) {
      const rj = j * n
      const uj = a[ri + j]
      let s = 0
      for (let k = 0; k < j; k++) {
        s += a[rj + k] * a[ri + k]
        p[k] += a[rj + k] * uj
      }

      p[j] += s + a[rj + j] * uj
    }

    let upSum = 0
    for (let j = 0; j < i; j++) {
      p[j] /= hi
      upSum += p[j] * a[ri + j]
    }

    // q = p - (uᵀp / 2h) u;  A ← A - q uᵀ - u qᵀ (lower triangle).
    const kk = upSum / (hi + hi)
    for (let j = 0; j < i; j++) p[j] -= kk * a[ri + j]
    for (let j = 0; j < i; j++) {
      const rj = j * n
      const uj = a[ri + j]
      const qj = p[j]
      for (let k = 0; k <= j; k++) a[rj + k] -= qj * a[ri + k] + uj * p[k]
    }
  }

  for (let i = 0; i < n; i++) d[i] = a[i * n + i]

  // Qᵀ = P_1 P_2 ··· P_{n-1}, built as M ← M P_i for ascending i (rows of M stay contiguous);
  // P_i only touches columns 0..i-1, and before it M is the identity outside its leading i × i block.
  const z = new Float64Array(n * n)
  for (let i = 0; i < n; i++) z[i * n + i] = 1
  for (let i = 2; i < n; i++) {
    const hi = h[i]
    if (hi === 0) continue
    const ri = i * n
    for (let r = 0; r < i; r++) {
      const rr = r * n
      let s = 0
      for (let c = 0; c < i; c++) s += z[rr + c] * a[ri + c]
      s /= hi
      for (let c = 0; c < i; c++) z[rr + c] -= s * a[ri + c]
    }
  }

  // z now holds Qᵀ (row c of z = column c of Q): the rotations below act on its rows.
  // ---- 2. implicit-shift QL on (d, e) ----
  for (let i = 1; i < n; i++) e[i - 1] = e[i]
  if (n > 0) e[n - 1] = 0
  let iterations = 0
  for (let l = 0; l < n; l++) {
    let iter = 0
    for (;;) {
      let m = l
      for (; m < n - 1; m++) {
        const dd = Math.abs(d[m]) + Math.abs(d[m + 1])
        if (Math.abs(e[m]) <= EPS * dd || Math.abs(e[m]) < Number.MIN_VALUE * 4) break
      }

      if (m === l) break
      if (iter++ === maxIterationsPerValue) throw new Error(`symmetricEigen: no convergence after ${maxIterationsPerValue} QL iterations (n = ${n}, eigenvalue ${l})`)
      iterations++
      let g = (d[l + 1] - d[l]) / (2 * e[l])
      let r = pythag(g, 1)
      g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r))
      let s = 1
      let c = 1
      let shift = 0
      let i = m - 1
      let underflow = false
      for (; i >= l; i--) {
        const f = s * e[i]
        const b = c * e[i]
        r = pythag(f, g)
        e[i + 1] = r
        if (r === 0) {
          d[i + 1] -= shift
          e[m] = 0
          underflow = true
          break
        }

        s = f / r
        c = g / r
        g = d[i + 1] - shift
        r = (d[i] - g) * s + 2 * c * b
        shift = s * r
        d[i + 1] = g + shift
        g = c * r - b
        const r0 = i * n
        const r1 = r0 + n
        for (let k = 0; k < n; k++) {
          const zi = z[r0 + k]
          const zi1 = z[r1 + k]
          z[r1 + k] = s * zi + c * zi1
          z[r0 + k] = c * zi - s * zi1
        }
      }

      if (underflow) continue
      d[l] -= shift
      e[l] = g
      e[m] = 0
    }
  }

  // Descending eigenvalues; ties keep index order (deterministic).
  const order = Array.from({length: n}, (_, i) => i)
  order.sort((i, j) => d[j] - d[i] || i - j)
  const values = new Float64Array(n)
  const vectors = matrix(n, n)
  for (const [col, i] of order.entries()) {
    values[col] = d[i]
    let big = 0
    for (let k = 0; k < n; k++) if (Math.abs(z[i * n + k]) > Math.abs(big)) big = z[i * n + k]
    const sign = big < 0 ? -1 : 1
    for (let k = 0; k < n; k++) vectors.data[k * n + col] = sign * z[i * n + k]
  }

  return {values, vectors, iterations}
}

/** Subtract each column's mean (over rows) — the queries' mean representation. */
export function centreColumns(m: Matrix): Matrix {
  const out = matrix(m.rows, m.cols, m.data)
  for (let j = 0; j < m.cols; j++) {
    let mean = 0
    for (let i = 0; i < m.rows; i++) mean += m.data[i * m.cols + j]
    mean /= m.rows || 1
    for (let i = 0; i < m.rows; i++) out.data[i * m.cols + j] -= mean
  }

  return out
}

/** M Mᵀ (rows × rows), float64. */
export function gram(m: Matrix): Matrix {
  const {rows: n, cols: d, data} = m
  const g = matrix(n, n)
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0
      const ri = i * d
      const rj = j * d
      for (let k = 0; k < d; k++) s += data[ri + k] * data[rj + k]
      g.data[i * n + j] = s
      g.data[j * n + i] = s
    }
  }

  return g
}

export interface LeftSingular {
  /** The first k left singular vectors as columns (N × k), k = min(r, N). */
  vectors: Matrix
  /** Their singular values, descending. */
  singularValues: Float64Array
  /** Numerical rank of M (singular values above the tolerance). */
  rank: number
}

/**
 * The first r left singular vectors of M (N × d), from the eigendecomposition of M Mᵀ.
 * `centre` subtracts the column mean first (the mean representation over queries).
 */
export function leftSingularVectors(m: Matrix, r: number, options: {centre?: boolean} = {}): LeftSingular {
  if (!(Number.isInteger(r) && r >= 1)) throw new RangeError(`r must be an integer >= 1, got ${r}`)
  for (let k = 0; k < m.data.length; k++) {
    if (!Number.isFinite(m.data[k])) throw new RangeError(`representation matrix has a non-finite entry at row ${Math.floor(k / m.cols)}, column ${k % m.cols}`)
  }

  const source = options.centre ? centreColumns(m) : m
  const n = m.rows
  const eigen = symmetricEigen(gram(source))
  const k = Math.min(r, n)
  const top = eigen.values[0] ?? 0
  const tol = 10 * Math.max(n, 1) * EPS * Math.max(top, 0)
  let rank = 0
  for (const lambda of eigen.values) if (lambda > tol && top > 0) rank++
  const vectors = matrix(n, k)
  for (let i = 0; i < n; i++) for (let c = 0; c < k; c++) vectors.data[i * k + c] = eigen.vectors.data[i * n + c]
  const singularValues = new Float64Array(k)
  for (let c = 0; c < k; c++) singularValues[c] = Math.sqrt(Math.max(eigen.values[c], 0))
  return {vectors, singularValues, rank}
}

/** The first k columns of an N × c matrix. */
function firstColumns(u: Matrix, k: number): Matrix {
  const out = matrix(u.rows, k)
  for (let i = 0; i < u.rows; i++) for (let c = 0; c < k; c++) out.data[i * k + c] = u.data[i * u.cols + c]
  return out
}

/** Aᵀ B for A (n × p), B (n × q). */
function transposeTimes(a: Matrix, b: Matrix): Matrix {
  if (a.rows !== b.rows) throw new RangeError(`inner dimensions differ: ${a.rows} vs ${b.rows}`)
  const out = matrix(a.cols, b.cols)
  for (let i = 0; i < a.cols; i++) {
    for (let j = 0; j < b.cols; j++) {
      let s = 0
      for (let k = 0; k < a.rows; k++) s += a.data[k * a.cols + i] * b.data[k * b.cols + j]
      out.data[i * b.cols + j] = s
    }
  }

  return out
}

/** Singular values (descending) of a small matrix, from the eigenvalues of its Gram AᵀA. */
function singularValues(a: Matrix): Float64Array {
  const eigen = symmetricEigen(transposeTimes(a, a))
  return eigen.values.map((x) => Math.sqrt(Math.max(x, 0)))
}

/**
 * Principal angles (degrees, ascending) between span(A) and span(B), A and B with orthonormal
 * columns (N × k each). cos θ_i = σ_i(AᵀB) (descending), sin θ_i = σ_{k+1-i}(B - A AᵀB); the
 * angle is arcsin of the sine when that is below √½ (θ < 45°) and arccos of the cosine otherwise,
 * both clamped to [0, 1], so identical spans give 0 and orthogonal ones 90 to rounding.
 */
export function principalAngles(a: Matrix, b: Matrix): number[] {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new RangeError(`principalAngles: shapes differ, ${a.rows} × ${a.cols} vs ${b.rows} × ${b.cols}`)
  const k = a.cols
  if (k === 0) return []
  const c = transposeTimes(a, b) // k × k
  const cos = singularValues(c)
  const residual = matrix(b.rows, k, b.data) // B - A (AᵀB)
  for (let i = 0; i < b.rows; i++) {
    for (let j = 0; j < k; j++) {
      let s = 0
      for (let l = 0; l < k; l++) s += a.data[i * k + l] * c.data[l * k + j]
      residual.data[i * k + j] -= s
    }
  }

  const sin = singularValues(residual) // descending: pairs with ascending cosines
  const angles: number[] = []
  for (let i = 0; i < k; i++) {
    const ci = Math.min(1, Math.max(0, cos[i]))
    const si = Math.min(1, Math.max(0, sin[k - 1 - i]))
    angles.push((si * si < 0.5 ? Math.asin(si) : Math.acos(ci)) * DEG)
  }

  return angles.sort((x, y) => x - y)
}

/** How the r_main angles are summed. */
export const ANGLE_SUMS = ['nested', 'subspace'] as const
export type AngleSum = (typeof ANGLE_SUMS)[number]

export interface SubspaceOptions {
  /** Number of leading left singular vectors compared (default 1, the authors' code). */
  rMain?: number
  /** Subtract the column mean of M before the SVD (default false, the authors' code). */
  centre?: boolean
  /**
   * `nested` (default, METHOD.md's formula): Σ_{r=1..r_main} arccos σ_r(U_θ[:, :r]ᵀ U_A[:, :r]),
   * the largest principal angle between the first-r subspaces, summed over r.
   * `subspace`: the sum of all r_main principal angles between the two r_main-dimensional spans.
   * Both are the authors' single angle when r_main = 1.
   */
  angleSum?: AngleSum
}

/** What the score needs from one representation matrix: its leading left singular vectors. */
export interface Representation {
  basis: LeftSingular
  centre: boolean
}

export function representation(m: Matrix, options: SubspaceOptions = {}): Representation {
  const centre = options.centre ?? false
  return {basis: leftSingularVectors(m, options.rMain ?? 1, {centre}), centre}
}

export interface SubspaceScore {
  /** The dataset-level Ships score in degrees. */
  score: number
  /** The angles summed (degrees): per r for `nested`, the principal angles for `subspace`. */
  angles: number[]
  /** Numerical rank of the ablated matrix (directions beyond it count 90°). */
  rank: number
}

/**
 * Dataset-level Ships of an ablation: base is the clean model's representation (computed once),
 * ablated the ablated model's, both from the same queries in the same order.
 */
export function subspaceShift(base: Representation, ablated: Representation, options: SubspaceOptions = {}): SubspaceScore {
  const r = options.rMain ?? 1
  const angleSum = options.angleSum ?? 'nested'
  if (!(Number.isInteger(r) && r >= 1)) throw new RangeError(`r_main must be an integer >= 1, got ${r}`)
  if (base.centre !== (options.centre ?? false) || ablated.centre !== base.centre) {
    throw new RangeError('subspaceShift: base and ablated representations must use the same centring as the options')
  }

  const n = base.basis.vectors.rows
  if (ablated.basis.vectors.rows !== n) throw new RangeError(`base has ${n} queries, ablated has ${ablated.basis.vectors.rows}`)
  if (base.basis.rank < r || base.basis.vectors.cols < r) {
    throw new RangeError(
      `r_main = ${r} exceeds the rank ${base.basis.rank} of the clean representation matrix (${n} queries${base.centre ? ', centred' : ''}): its first ${r} singular directions are not defined; use r_main <= ${base.basis.rank}`,
    )
  }

  if (ablated.basis.vectors.cols < r) throw new RangeError(`ablated representation has ${ablated.basis.vectors.cols} vectors, r_main = ${r}`)
  const rankA = ablated.basis.rank
  const anglesFor = (k: number): number[] => {
    const defined = Math.min(k, rankA)
    const angles = principalAngles(firstColumns(base.basis.vectors, defined), firstColumns(ablated.basis.vectors, defined))
    while (angles.length < k) angles.push(90) // directions the ablated model no longer has
    return angles
  }

  let angles: number[]
  if (angleSum === 'subspace') {
    angles = anglesFor(r)
  } else {
    angles = []
    for (let k = 1; k <= r; k++) angles.push(Math.max(...anglesFor(k)))
  }

  return {score: angles.reduce((s, x) => s + x, 0), angles, rank: rankA}
}

/** One call for two matrices (tests, one-off use): dataset-level Ships in degrees. */
export function datasetShips(clean: Matrix, ablated: Matrix, options: SubspaceOptions = {}): SubspaceScore {
  return subspaceShift(representation(clean, options), representation(ablated, options), options)
}
