/**
 * The report as one self-contained HTML page: inline CSS, inline SVG, a few lines of inline JS
 * (sortable tables, a flipped-only filter); nothing is fetched when it is viewed.
 */
import type {Cell, Table} from './csv.js'
import {type HeatGrid, heatmapSvg} from './heatmap.js'
import type {ExampleGroup, Report} from './report.js'

export interface Generated {
  sahara: string
  node: string
  at: string
}

export const escapeHtml = (s: string) => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;').replaceAll("'", '&#39;')

/**
 * A number as the page shows it (the CSV keeps full precision): a column with any fraction in it
 * is real (3 decimals, exponent form under 0.01), otherwise integer; null is a dash.
 */
export function formatCell(value: Cell, real = !Number.isInteger(value)): string {
  if (value === null) return '—'
  if (typeof value === 'string') return value
  if (!Number.isFinite(value)) return 'n/a'
  if (!real) return Math.abs(value) >= 10_000 ? value.toLocaleString('en-US') : String(value)
  if (value !== 0 && Math.abs(value) < 1e-2) return value.toExponential(2)
  return value.toFixed(3)
}

export function tableHtml(table: Table): string {
  const real = table.columns.map((_, c) => table.rows.some((row) => typeof row[c] === 'number' && !Number.isInteger(row[c])))
  const head = table.columns.map((c) => `<th>${escapeHtml(c.replaceAll('_', ' '))}</th>`).join('')
  const cell = (v: Cell, c: number) => {
    const cls = typeof v === 'number' ? ' class="num"' : typeof v === 'string' && v.length > 40 ? ' class="long"' : ''
    return `<td${cls}${typeof v === 'number' ? ` data-sort="${v}"` : ''}>${escapeHtml(formatCell(v, real[c]))}</td>`
  }

  const body = table.rows.map((row) => `<tr>${row.map(cell).join('')}</tr>`).join('\n')
  return [
    `<figure class="table" id="table-${escapeHtml(table.id)}">`,
    `<figcaption><b>${escapeHtml(table.title)}</b>${table.note ? `<br><span class="note">${escapeHtml(table.note)}</span>` : ''}</figcaption>`,
    `<div class="scroll"><table class="data" data-table="${escapeHtml(table.id)}"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table></div>`,
    '</figure>',
  ].join('\n')
}

const badge = (refused: boolean) => `<span class="badge ${refused ? 'refused' : 'complied'}">${refused ? 'refused' : 'complied'}</span>`

function examplesHtml(groups: readonly ExampleGroup[]): string {
  return groups
    .map((g) => {
      const items = g.examples
        .map(
          (e) => `<div class="example${e.flipped ? ' flipped' : ''}" data-flipped="${e.flipped}">
<div class="prompt"><span class="label">#${e.index} prompt</span> ${escapeHtml(e.prompt)}</div>
<div class="reply"><span class="label">clean</span> ${badge(e.clean.verdict.refused)} <q>${escapeHtml(e.clean.reply)}</q></div>
${e.ablated ? `<div class="reply"><span class="label">ablated</span> ${badge(e.ablated.verdict.refused)} <q>${escapeHtml(e.ablated.reply)}</q>${e.flipped ? ' <b class="flip">flipped</b>' : ''}</div>` : ''}
</div>`,
        )
        .join('\n')
      return `<section class="examples" data-job="${escapeHtml(g.job)}"><h3>${escapeHtml(g.job)}</h3><p class="note">heads ${escapeHtml(g.heads)} ablated (${escapeHtml(g.method.toUpperCase())}): ${g.nFlipped} of ${g.n} prompts flipped from refusal to compliance.</p>\n${items}\n</section>`
    })
    .join('\n')
}

const CSS = `
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:1400px;padding:1rem 2rem;color:#222;line-height:1.4}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.note,.sub{color:#555;font-size:.9rem}nav a{margin-right:1rem}
.grids{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
figure{margin:1rem 0}.scroll{overflow-x:auto}
table.data{border-collapse:collapse;font-size:.85rem}table.data th,table.data td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top;white-space:nowrap}table.data td.long{white-space:normal;min-width:16rem}
table.data th{background:#f3f3f3;cursor:pointer;white-space:nowrap}table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
table.data tbody tr:nth-child(even){background:#fafafa}
.example{border:1px solid #ddd;border-radius:6px;padding:.5rem .75rem;margin:.5rem 0}.example.flipped{border-left:4px solid #e4002b}
.label{display:inline-block;min-width:5.5rem;color:#555;font-size:.8rem;text-transform:uppercase}
.badge{font-size:.75rem;border-radius:3px;padding:0 .35rem;color:#fff}.badge.refused{background:#3b528b}.badge.complied{background:#c2410c}
.flip{color:#e4002b;font-size:.8rem}q{font-family:ui-monospace,monospace;font-size:.85rem}
.examples.only-flipped .example:not(.flipped){display:none}
`

const JS = `
document.querySelectorAll('table.data').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
      rows.sort(function(a, b){
        var x = a.cells[col], y = b.cells[col];
        var nx = x.dataset.sort, ny = y.dataset.sort;
        if (nx !== undefined && ny !== undefined) return dir * (Number(nx) - Number(ny));
        return dir * x.textContent.localeCompare(y.textContent);
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
var toggle = document.getElementById('only-flipped');
if (toggle) toggle.addEventListener('change', function(){
  document.querySelectorAll('section.examples').forEach(function(s){ s.classList.toggle('only-flipped', toggle.checked); });
});
`

export interface Section {
  id: string
  title: string
  /** HTML */
  body: string
}

/** The page around the sections: title, a line under it, a table of contents, the inline CSS and JS. */
export function pageHtml(title: string, subtitle: string, sections: readonly Section[]): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<header><h1>${escapeHtml(title)}</h1><p class="sub">${escapeHtml(subtitle)}</p><nav>${sections.map((s) => `<a href="#${s.id}">${escapeHtml(s.title)}</a>`).join('')}</nav></header>
${sections.map((s) => `<section id="${s.id}"><h2>${escapeHtml(s.title)}</h2>\n${s.body}\n</section>`).join('\n')}
<script>${JS}</script>
</body>
</html>
`
}

const generatedNote = (g: Generated) => `<p class="note">Written by sahara ${escapeHtml(g.sahara)} on Node ${escapeHtml(g.node)} at ${escapeHtml(g.at)}.</p>`

export function reportHtml(report: Report, generated: Generated): string {
  const tablesOf = (prefix: string) => report.tables.filter((t) => t.id.startsWith(prefix)).map(tableHtml).join('\n')
  const sections: Section[] = []
  if (report.heatmaps.length > 0) {
    const body = report.heatmaps.map((h) => `<h3>${escapeHtml(h.job)}</h3><div class="grids">${h.grids.map(heatmapSvg).join('\n')}</div>`).join('\n')
    sections.push({id: 'heatmaps', title: 'Where the safety heads sit', body: body + tablesOf('ships-')})
  }

  if (report.traces.length > 0) sections.push({id: 'trace', title: 'Sahara search', body: `<div class="grids">${report.traces.map((t) => t.svg).join('\n')}</div>${tablesOf('search-')}`})
  if (report.asr.length > 0) sections.push({id: 'asr', title: 'Attack success rate by number of heads (Table 3)', body: tablesOf('asr-')})
  if (report.examples.length > 0) {
    sections.push({id: 'examples', title: 'Examples', body: `<label><input type="checkbox" id="only-flipped"> flipped only</label>\n${examplesHtml(report.examples)}`})
  }

  sections.push({
    id: 'environment',
    title: 'Configuration and environment',
    body: `${tablesOf('environment')}${generatedNote(generated)}<p class="note">Versions and devices in the table are those each job ran with (its summary.json).</p>`,
  })
  return pageHtml(report.title, report.subtitle, sections)
}

export function compareHtml(page: {title: string; subtitle: string; grids: readonly HeatGrid[]; tables: readonly Table[]}, generated: Generated): string {
  return pageHtml(page.title, page.subtitle, [
    {id: 'heatmaps', title: 'Side by side', body: `<div class="grids">${page.grids.map(heatmapSvg).join('\n')}</div>`},
    {id: 'tables', title: 'Overlap and ranks', body: page.tables.map(tableHtml).join('\n') + generatedNote(generated)},
  ])
}
