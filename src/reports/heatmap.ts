/**
 * The layer × head heatmap, as SVG (text, tooltips, legend) and as RGBA pixels for the PNG
 * (src/reports/png.ts). Rows are layers (L0 on top), columns heads; values are layer-major,
 * NaN for a head with no value. Marked heads (e.g. a ranking's top-k) get a red frame.
 */
import {MISSING, colourAt, hex, textOn} from './colour.js'

export interface HeatGrid {
  /** File-name safe (heatmaps/<id>.svg, .png). */
  id: string
  title: string
  layers: number
  heads: number
  /** layers × heads values, layer-major; NaN = none. */
  values: number[]
  /** How a value reads in a cell and its tooltip. */
  format: (value: number) => string
  /** `log` for heavy-tailed values such as mean KL (floor: max × 1e-4); default linear from 0. */
  scale?: 'linear' | 'log'
  /** Head indices (layer × heads + head) framed in red. */
  marks?: number[]
  /** What a red frame means, for the legend. */
  marksLabel?: string
}

/** Each value's position on the colour scale, in [0, 1]; NaN stays NaN. */
export function normalise(values: readonly number[], scale: 'linear' | 'log' = 'linear'): number[] {
  const finite = values.filter(Number.isFinite)
  const max = finite.length ? Math.max(...finite) : 0
  if (!(max > 0)) return values.map((v) => (Number.isFinite(v) ? 0 : Number.NaN))
  if (scale === 'linear') return values.map((v) => (Number.isFinite(v) ? Math.max(0, v) / max : Number.NaN))
  const floor = Math.log10(max * 1e-4)
  const top = Math.log10(max)
  return values.map((v) => (Number.isFinite(v) ? (Math.log10(Math.max(v, max * 1e-4)) - floor) / (top - floor) : Number.NaN))
}

const escapeXml = (s: string) => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;')

/** Cell size in pixels: big enough to print the value on small models, smaller for 32 × 32. */
export function cellSize(grid: Pick<HeatGrid, 'layers' | 'heads'>): number {
  const n = Math.max(grid.layers, grid.heads)
  return n <= 8 ? 56 : n <= 16 ? 30 : 16
}

export function heatmapSvg(grid: HeatGrid): string {
  const cell = cellSize(grid)
  const showValues = cell >= 30
  const left = 44
  const top = 58
  const legendWidth = 14
  const width = Math.max(left + grid.heads * cell + 24 + legendWidth + 70, left + Math.ceil(grid.title.length * 8))
  const height = top + grid.layers * cell + 34
  const ts = normalise(grid.values, grid.scale)
  const marks = new Set(grid.marks ?? [])
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" data-id="${escapeXml(grid.id)}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="11">`,
    `<title>${escapeXml(grid.title)}</title>`,
    `<text x="${left}" y="16" font-size="13" font-weight="600">${escapeXml(grid.title)}</text>`,
    `<text x="${left + (grid.heads * cell) / 2}" y="${top - 24}" text-anchor="middle" fill="#555">head</text>`,
    `<text x="12" y="${top + (grid.layers * cell) / 2}" text-anchor="middle" fill="#555" transform="rotate(-90 12 ${top + (grid.layers * cell) / 2})">layer</text>`,
  ]
  const every = Math.max(1, Math.ceil(grid.heads / 16))
  for (let h = 0; h < grid.heads; h += every) parts.push(`<text x="${left + h * cell + cell / 2}" y="${top - 6}" text-anchor="middle">${h}</text>`)
  for (let l = 0; l < grid.layers; l += Math.max(1, Math.ceil(grid.layers / 16))) {
    parts.push(`<text x="${left - 6}" y="${top + l * cell + cell / 2 + 4}" text-anchor="end">${l}</text>`)
  }

  for (let l = 0; l < grid.layers; l++) {
    for (let h = 0; h < grid.heads; h++) {
      const i = l * grid.heads + h
      const colour = colourAt(ts[i])
      const value = grid.values[i]
      const label = Number.isFinite(value) ? grid.format(value) : 'n/a'
      const x = left + h * cell
      const y = top + l * cell
      parts.push(
        `<rect class="cell" data-head="L${l}H${h}" x="${x}" y="${y}" width="${cell - 1}" height="${cell - 1}" fill="${hex(colour)}"><title>L${l}H${h}: ${escapeXml(label)}</title></rect>`,
      )
      if (showValues) parts.push(`<text x="${x + (cell - 1) / 2}" y="${y + cell / 2 + 3}" text-anchor="middle" font-size="${cell >= 50 ? 10 : 8}" fill="${textOn(colour)}" pointer-events="none">${escapeXml(label)}</text>`)
    }
  }

  for (const i of marks) {
    const [l, h] = [Math.floor(i / grid.heads), i % grid.heads]
    parts.push(`<rect class="mark" x="${left + h * cell + 1}" y="${top + l * cell + 1}" width="${cell - 3}" height="${cell - 3}" fill="none" stroke="#e4002b" stroke-width="2" pointer-events="none"/>`)
  }

  // legend: the colour bar from the top value (top) to 0 or the log floor (bottom)
  const lx = left + grid.heads * cell + 24
  const lh = grid.layers * cell
  parts.push(`<defs><linearGradient id="scale-${escapeXml(grid.id)}" x1="0" y1="1" x2="0" y2="0">`)
  for (let s = 0; s <= 8; s++) parts.push(`<stop offset="${s / 8}" stop-color="${hex(colourAt(s / 8))}"/>`)
  parts.push('</linearGradient></defs>', `<rect x="${lx}" y="${top}" width="${legendWidth}" height="${lh}" fill="url(#scale-${escapeXml(grid.id)})"/>`)
  const finite = grid.values.filter(Number.isFinite)
  const max = finite.length ? Math.max(...finite) : 0
  const low = grid.scale === 'log' ? max * 1e-4 : 0
  parts.push(`<text x="${lx + legendWidth + 4}" y="${top + 9}">${escapeXml(grid.format(max))}</text>`)
  parts.push(`<text x="${lx + legendWidth + 4}" y="${top + lh}">${escapeXml(grid.scale === 'log' ? `≤${grid.format(low)}` : grid.format(low))}</text>`)
  if (grid.scale === 'log') parts.push(`<text x="${lx + legendWidth + 4}" y="${top + lh / 2}" fill="#555">log</text>`)
  const foot = [marks.size > 0 ? `red frame: ${grid.marksLabel ?? 'marked'}` : '', grid.values.some((v) => !Number.isFinite(v)) ? 'grey: no value' : ''].filter(Boolean).join(' · ')
  if (foot) parts.push(`<text x="${left}" y="${top + lh + 20}" fill="#555">${escapeXml(foot)}</text>`)
  parts.push('</svg>')
  return parts.join('\n')
}

/** The heatmap as pixels: `cell` px squares, 1 px gaps, red frames on marks; no text (the SVG has it). */
export function heatmapPixels(grid: HeatGrid, cell = 24): {width: number; height: number; rgba: Uint8Array} {
  const width = grid.heads * cell + 1
  const height = grid.layers * cell + 1
  const rgba = new Uint8Array(width * height * 4).fill(255)
  const ts = normalise(grid.values, grid.scale)
  const marks = new Set(grid.marks ?? [])
  const put = (x: number, y: number, [r, g, b]: [number, number, number]) => rgba.set([r, g, b, 255], (y * width + x) * 4)
  for (let l = 0; l < grid.layers; l++) {
    for (let h = 0; h < grid.heads; h++) {
      const i = l * grid.heads + h
      const colour = Number.isNaN(ts[i]) ? MISSING : colourAt(ts[i])
      const frame = marks.has(i) ? Math.max(1, Math.round(cell / 10)) : 0
      for (let dy = 1; dy < cell; dy++) {
        for (let dx = 1; dx < cell; dx++) {
          const edge = dx <= frame || dy <= frame || dx >= cell - frame || dy >= cell - frame
          put(h * cell + dx, l * cell + dy, edge ? [228, 0, 43] : colour)
        }
      }
    }
  }

  return {width, height, rgba}
}
