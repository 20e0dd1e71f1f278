/**
 * The Sahara trace as an SVG line chart: the chosen head's score at every step (solid, labelled
 * with the head), the runner-up's (dashed), y from 0.
 */
export interface TracePoint {
  step: number
  head: string
  score: number
  runnerUp: {head: string; score: number} | null
}

const escapeXml = (s: string) => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;')

export function traceSvg(points: readonly TracePoint[], options: {title: string; yLabel: string; format: (v: number) => string}): string {
  const width = 520
  const height = 260
  const m = {left: 64, right: 20, top: 48, bottom: 40}
  const w = width - m.left - m.right
  const h = height - m.top - m.bottom
  const values = points.flatMap((p) => [p.score, ...(p.runnerUp ? [p.runnerUp.score] : [])]).filter(Number.isFinite)
  const max = values.length ? Math.max(...values) * 1.1 || 1 : 1
  const n = Math.max(1, points.length)
  const x = (i: number) => m.left + 24 + (n === 1 ? (w - 48) / 2 : (i * (w - 48)) / (n - 1))
  const y = (v: number) => m.top + h - (Math.max(0, v) / max) * h
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="trace" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="11">`,
    `<title>${escapeXml(options.title)}</title>`,
    `<text x="${m.left}" y="16" font-size="13" font-weight="600">${escapeXml(options.title)}</text>`,
    `<line x1="${m.left}" y1="${m.top + h}" x2="${m.left + w}" y2="${m.top + h}" stroke="#888"/>`,
    `<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + h}" stroke="#888"/>`,
    `<text x="${m.left + w / 2}" y="${height - 6}" text-anchor="middle" fill="#555">step</text>`,
    `<text x="14" y="${m.top + h / 2}" text-anchor="middle" fill="#555" transform="rotate(-90 14 ${m.top + h / 2})">${escapeXml(options.yLabel)}</text>`,
  ]
  for (let t = 0; t <= 4; t++) {
    const v = (max * t) / 4
    parts.push(`<line x1="${m.left - 4}" y1="${y(v)}" x2="${m.left + w}" y2="${y(v)}" stroke="#eee"/>`, `<text x="${m.left - 6}" y="${y(v) + 4}" text-anchor="end">${escapeXml(options.format(v))}</text>`)
  }

  const runner = points.flatMap((p, i) => (p.runnerUp ? [`${x(i)},${y(p.runnerUp.score)}`] : []))
  if (runner.length > 1) parts.push(`<polyline points="${runner.join(' ')}" fill="none" stroke="#999" stroke-dasharray="4 3"/>`)
  parts.push(`<polyline points="${points.map((p, i) => `${x(i)},${y(p.score)}`).join(' ')}" fill="none" stroke="#3b528b" stroke-width="2"/>`)
  for (const [i, p] of points.entries()) {
    parts.push(
      `<circle class="step" cx="${x(i)}" cy="${y(p.score)}" r="4" fill="#3b528b"><title>step ${p.step}: ${escapeXml(p.head)} ${escapeXml(options.format(p.score))}${p.runnerUp ? `; runner-up ${escapeXml(p.runnerUp.head)} ${escapeXml(options.format(p.runnerUp.score))}` : ''}</title></circle>`,
      `<text x="${x(i)}" y="${y(p.score) - 8}" text-anchor="middle" font-weight="600">${escapeXml(p.head)}</text>`,
      `<text x="${x(i)}" y="${m.top + h + 14}" text-anchor="middle">${p.step}</text>`,
    )
    if (p.runnerUp) parts.push(`<circle cx="${x(i)}" cy="${y(p.runnerUp.score)}" r="3" fill="#fff" stroke="#999"><title>runner-up ${escapeXml(p.runnerUp.head)} ${escapeXml(options.format(p.runnerUp.score))}</title></circle>`)
  }

  parts.push(`<text x="${m.left}" y="32" fill="#555">— chosen head (label) · - - runner-up</text>`, '</svg>')
  return parts.join('\n')
}
