/**
 * The colour scale of every heatmap (SVG and PNG alike): viridis, sampled at 9 stops and
 * interpolated linearly in RGB. Perceptually ordered and readable in grey and by colour-blind
 * readers. Missing values (NaN: a head a pre-filter did not scan) are grey.
 */

export type Rgb = [number, number, number]

const VIRIDIS: Rgb[] = [
  [68, 1, 84],
  [72, 40, 120],
  [62, 73, 137],
  [49, 104, 142],
  [38, 130, 142],
  [31, 158, 137],
  [53, 183, 121],
  [110, 206, 88],
  [253, 231, 37],
]

export const MISSING: Rgb = [200, 200, 200]

/** The colour at t in [0, 1] (clamped); NaN gives MISSING. */
export function colourAt(t: number): Rgb {
  if (Number.isNaN(t)) return MISSING
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1)
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x))
  const f = x - i
  const [a, b] = [VIRIDIS[i], VIRIDIS[i + 1]]
  return [0, 1, 2].map((c) => Math.round(a[c] + (b[c] - a[c]) * f)) as Rgb
}

export const hex = ([r, g, b]: Rgb) => `#${[r, g, b].map((c) => c.toString(16).padStart(2, '0')).join('')}`

/** Black or white text, whichever reads better on the colour (relative luminance). */
export const textOn = ([r, g, b]: Rgb) => (0.2126 * r + 0.7152 * g + 0.0722 * b > 140 ? '#000' : '#fff')
