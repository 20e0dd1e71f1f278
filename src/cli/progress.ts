/**
 * Progress of a long command on stderr: on a terminal, one bar redrawn in place (units done/total,
 * rate, ETA, what is running); elsewhere (logs, CI, pipes), a plain line every `intervalMs` and at
 * the end. Log lines printed meanwhile go above the bar. stdout is never touched, so --json
 * output stays the result alone. No dependency: a bar is a line of text and `\r\x1b[2K`.
 *
 * Jobs report through `RunContext.progress(done, total, what)` (src/jobs/registry.ts); commands
 * get one Progress from SaharaCommand (src/cli/base.ts).
 */

/** What Progress writes to: process.stderr, or a fake in tests. */
export interface ProgressStream {
  write(text: string): unknown
  isTTY?: boolean
  columns?: number
}

export interface ProgressOptions {
  stream?: ProgressStream
  /** Draw a bar (default: the stream is a terminal). */
  tty?: boolean
  /** Between plain lines when not a terminal (default 10 s). */
  intervalMs?: number
  /** Between redraws of the bar (default 100 ms). */
  redrawMs?: number
  /** The name of a unit, plural (default "units"). */
  unit?: string
  /** Milliseconds, monotonic (tests inject a clock). */
  now?: () => number
  /** Nothing at all (--quiet). */
  silent?: boolean
}

export interface ProgressState {
  done: number
  total: number
  unit: string
  /** units per second since the first update of this total; null until measurable */
  rate: number | null
  /** seconds left at that rate; null when unknown */
  etaS: number | null
  what: string
}

/** 75 -> "1m15s", 3725 -> "1h02m", 9 -> "9s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?'
  const s = Math.round(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

function formatRate(rate: number | null, unit: string): string {
  if (rate === null) return `— ${unit}/s`
  if (rate >= 1) return `${rate.toFixed(rate >= 100 ? 0 : 1)} ${unit}/s`
  if (rate > 0) return `${formatDuration(1 / rate)}/${unit.replace(/s$/, '')}`
  return `0 ${unit}/s`
}

/** Whole units for display: 12.4 of 75 jobs is "12/75". */
const count = (x: number) => String(Math.floor(x + 1e-9))

/** `▕████▌   ▏` for a fraction in [0, 1], `width` cells, eighths at the edge. */
export function barCells(fraction: number, width: number): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0))
  const eighths = Math.round(f * width * 8)
  const full = Math.floor(eighths / 8)
  const partial = eighths % 8
  const parts = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉']
  return `▕${'█'.repeat(full)}${partial > 0 ? parts[partial] : ''}${' '.repeat(Math.max(0, width - full - (partial > 0 ? 1 : 0)))}▏`
}

/** The bar line, cut to `columns`. */
export function renderBar(state: ProgressState, columns = 100): string {
  const percent = state.total > 0 ? Math.floor((100 * state.done) / state.total) : 0
  const eta = state.etaS === null ? 'ETA ?' : `ETA ${formatDuration(state.etaS)}`
  const head = `${barCells(state.total > 0 ? state.done / state.total : 0, 24)} ${String(percent).padStart(3)}% ${count(state.done)}/${count(state.total)} ${state.unit} · ${formatRate(state.rate, state.unit)} · ${eta}`
  const line = state.what ? `${head} · ${state.what}` : head
  return line.length > columns - 1 ? `${line.slice(0, Math.max(0, columns - 2))}…` : line
}

/** The periodic line when stderr is not a terminal. */
export function renderLine(state: ProgressState): string {
  const percent = state.total > 0 ? Math.floor((100 * state.done) / state.total) : 0
  const eta = state.etaS === null ? 'ETA ?' : `ETA ${formatDuration(state.etaS)}`
  return `progress: ${count(state.done)}/${count(state.total)} ${state.unit} (${percent}%), ${formatRate(state.rate, state.unit)}, ${eta}${state.what ? ` — ${state.what}` : ''}`
}

export class Progress {
  private readonly stream: ProgressStream
  private readonly tty: boolean
  private readonly intervalMs: number
  private readonly redrawMs: number
  private readonly now: () => number
  private readonly silent: boolean
  private unit: string
  private state: ProgressState | null = null
  /** Where the rate is measured from: the first update of the current total. */
  private origin: {t: number; done: number} | null = null
  private lastDraw = Number.NEGATIVE_INFINITY
  private lastLine: number
  private barShown = false

  constructor(options: ProgressOptions = {}) {
    this.stream = options.stream ?? process.stderr
    this.tty = options.tty ?? this.stream.isTTY === true
    this.intervalMs = options.intervalMs ?? 10_000
    this.redrawMs = options.redrawMs ?? 100
    this.now = options.now ?? (() => performance.now())
    this.silent = options.silent ?? false
    this.unit = options.unit ?? 'units'
    this.lastLine = this.now()
  }

  /** `done` of `total` units (fractions allowed: 3.5 jobs), `what` is running now. */
  update(done: number, total: number, what = '', unit?: string): void {
    if (this.silent) return
    const t = this.now()
    if (unit !== undefined) this.unit = unit
    if (this.state === null || this.state.total !== total || done < this.state.done) this.origin = {t, done}
    const origin = this.origin!
    const elapsedS = (t - origin.t) / 1000
    const rate = elapsedS > 0.5 && done > origin.done ? (done - origin.done) / elapsedS : null
    const etaS = rate ? (total - done) / rate : done >= total ? 0 : null
    this.state = {done, total, unit: this.unit, rate, etaS, what}
    const finished = done >= total
    if (this.tty) {
      if (finished || t - this.lastDraw >= this.redrawMs) this.draw(t)
    } else if (finished ? t > this.lastLine : t - this.lastLine >= this.intervalMs) {
      this.lastLine = t
      this.stream.write(`${renderLine(this.state)}\n`)
    }
  }

  /** A log line, printed above the bar. */
  log(message: string): void {
    if (this.silent) return
    if (this.barShown) this.stream.write('\r\x1b[2K')
    this.stream.write(`${message}\n`)
    if (this.barShown && this.state) this.draw(this.now())
  }

  /** Take the bar off the screen (the command's result follows on stdout). */
  finish(): void {
    if (this.barShown) this.stream.write('\r\x1b[2K')
    this.barShown = false
    this.state = null
  }

  private draw(t: number): void {
    this.lastDraw = t
    this.barShown = true
    this.stream.write(`\r\x1b[2K${renderBar(this.state!, this.stream.columns || 100)}`)
  }
}
