/**
 * The cyclic Jacobi eigensolver the CLI used before Householder + QL (src/science/subspace.ts),
 * kept as an independent test oracle: a different algorithm (rotations that zero one
 * off-diagonal entry at a time, Rutishauser's stable formulas) that must give the same
 * eigenvalues and eigenvectors. O(N³) per sweep, ~10 sweeps: for tests of modest N only.
 */
import {type Matrix, matrix} from '../../src/science/subspace.js'

const EPS = 2.220446049250313e-16

/** Eigenvalues (descending) and eigenvectors as columns (largest-magnitude entry positive). */
export function jacobiEigen(input: Matrix, maxSweeps = 100): {values: Float64Array; vectors: Matrix; sweeps: number} {
  const n = input.rows
  const a = new Float64Array(n * n)
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      a[i * n + j] = input.data[i * n + j]
      a[j * n + i] = input.data[i * n + j]
    }
  }

  const v = new Float64Array(n * n) // eigenvectors as rows during the iteration
  for (let i = 0; i < n; i++) v[i * n + i] = 1
  let norm2 = 0
  for (let k = 0; k < n * n; k++) norm2 += a[k] * a[k]
  const floor = EPS * EPS * norm2

  let sweeps = 0
  for (; sweeps < maxSweeps; sweeps++) {
    let rotated = false
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]
        if (apq === 0) continue
        const app = a[p * n + p]
        const aqq = a[q * n + q]
        if (Math.abs(apq) <= EPS * 0.5 * Math.sqrt(Math.abs(app * aqq)) || apq * apq <= floor) {
          a[p * n + q] = 0
          a[q * n + p] = 0
          continue
        }

        rotated = true
        const theta = (aqq - app) / (2 * apq)
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1))
        const c = 1 / Math.sqrt(t * t + 1)
        const s = t * c
        const tau = s / (1 + c)
        a[p * n + p] = app - t * apq
        a[q * n + q] = aqq + t * apq
        a[p * n + q] = 0
        a[q * n + p] = 0
        for (let k = 0; k < n; k++) {
          if (k === p || k === q) continue
          const akp = a[k * n + p]
          const akq = a[k * n + q]
          const nkp = akp - s * (akq + tau * akp)
          const nkq = akq + s * (akp - tau * akq)
          a[k * n + p] = nkp
          a[p * n + k] = nkp
          a[k * n + q] = nkq
          a[q * n + k] = nkq
        }

        for (let k = 0; k < n; k++) {
          const vp = v[p * n + k]
          const vq = v[q * n + k]
          v[p * n + k] = vp - s * (vq + tau * vp)
          v[q * n + k] = vq + s * (vp - tau * vq)
        }
      }
    }

    if (!rotated) break
  }

  if (sweeps === maxSweeps) throw new Error(`jacobiEigen: no convergence after ${maxSweeps} sweeps`)
  const order = Array.from({length: n}, (_, i) => i)
  order.sort((i, j) => a[j * n + j] - a[i * n + i] || i - j)
  const values = new Float64Array(n)
  const vectors = matrix(n, n)
  for (const [col, i] of order.entries()) {
    values[col] = a[i * n + i]
    let big = 0
    for (let k = 0; k < n; k++) if (Math.abs(v[i * n + k]) > Math.abs(big)) big = v[i * n + k]
    const sign = big < 0 ? -1 : 1
    for (let k = 0; k < n; k++) vectors.data[k * n + col] = sign * v[i * n + k]
  }

  return {values, vectors, sweeps}
}
