/**
 * Tables as data, rendered to CSV here and to HTML by src/reports/html.ts: every table a report
 * or a comparison shows is one `Table`, so `--format csv` exports exactly what the page shows.
 */

export type Cell = string | number | null

export interface Table {
  /** File-name safe, unique within a report (the CSV is `<id>.csv`). */
  id: string
  title: string
  /** One line under the title (HTML only). */
  note?: string
  columns: string[]
  rows: Cell[][]
}

/** RFC 4180: a field with a comma, quote, CR or LF is quoted, quotes doubled; null is empty. */
export function csvField(value: Cell): string {
  if (value === null) return ''
  const text = typeof value === 'number' ? (Number.isFinite(value) ? String(value) : '') : value
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

/** The table as CSV, CRLF line ends (RFC 4180), a header row first. */
export function tableCsv(table: Pick<Table, 'columns' | 'rows'>): string {
  return [table.columns, ...table.rows].map((row) => row.map(csvField).join(',')).join('\r\n') + '\r\n'
}

/** A name safe in a file name: letters, digits, `.`, `_` and `-`. */
export function safeId(text: string): string {
  return text.replaceAll(/[^A-Za-z0-9._-]+/g, '_').replaceAll(/^_+|_+$/g, '') || 'table'
}
