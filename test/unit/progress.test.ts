import {describe, expect, it} from 'vitest'

import {Progress, barCells, formatDuration, renderBar, renderLine} from '../../src/cli/progress.js'

function fakeStream(isTTY: boolean) {
  const writes: string[] = []
  return {writes, stream: {isTTY, columns: 120, write: (s: string) => writes.push(s)}}
}

describe('progress', () => {
  it('formats durations', () => {
    expect(formatDuration(9)).toBe('9s')
    expect(formatDuration(75)).toBe('1m15s')
    expect(formatDuration(3725)).toBe('1h02m')
    expect(formatDuration(Number.NaN)).toBe('?')
  })

  it('draws bars of the asked width with eighths at the edge', () => {
    expect(barCells(0, 4)).toBe('▕    ▏')
    expect(barCells(1, 4)).toBe('▕████▏')
    expect(barCells(0.5, 4)).toBe('▕██  ▏')
    expect(barCells(0.5 + 1 / 8, 4)).toBe('▕██▌ ▏') // half a cell more
    for (const f of [0, 0.13, 0.5, 0.99, 1, 2, -1]) expect([...barCells(f, 10)].length).toBe(12)
  })

  it('renders done/total, rate, ETA and what is running, cut to the terminal width', () => {
    const state = {done: 12, total: 75, unit: 'jobs', rate: 0.5, etaS: 126, what: 'asr-top2'}
    const bar = renderBar(state, 200)
    expect(bar).toContain(' 16% 12/75 jobs')
    expect(bar).toContain('2s/job')
    expect(bar).toContain('ETA 2m06s')
    expect(bar).toContain('asr-top2')
    expect(renderBar({...state, what: 'x'.repeat(300)}, 80).length).toBeLessThan(80)
    expect(renderLine({...state, rate: 3})).toBe('progress: 12/75 jobs (16%), 3.0 jobs/s, ETA 2m06s — asr-top2')
  })

  it('on a terminal: redraws one line, prints log lines above it, clears it at the end', () => {
    let t = 0
    const {writes, stream} = fakeStream(true)
    const p = new Progress({stream, now: () => t, unit: 'requests'})
    p.update(0, 4, 'start')
    t = 1000
    p.update(1, 4, 'prompts 1-32')
    p.log('a log line')
    t = 2000
    p.update(2, 4)
    p.finish()
    expect(writes.every((w) => !w.includes('\n') || w === 'a log line\n')).toBe(true)
    expect(writes.filter((w) => w.startsWith('\r\u001B[2K▕')).length).toBeGreaterThanOrEqual(3)
    const logAt = writes.indexOf('a log line\n')
    expect(writes[logAt - 1]).toBe('\r\u001B[2K') // bar cleared before the line
    expect(writes[logAt + 1]).toContain('1/4 requests') // and drawn again after it
    expect(writes.at(-1)).toBe('\r\u001B[2K')
    expect(writes.join('')).toContain('ETA 2s') // 1 request/s, 2 left
  })

  it('elsewhere: a plain line every interval and at the end, no control characters', () => {
    let t = 0
    const {writes, stream} = fakeStream(false)
    const p = new Progress({stream, now: () => t, intervalMs: 10_000})
    for (let i = 1; i <= 30; i++) {
      t = i * 1000
      p.update(i, 30, `unit ${i}`, 'units')
    }

    expect(writes).toEqual([
      'progress: 10/30 units (33%), 1.0 units/s, ETA 20s — unit 10\n',
      'progress: 20/30 units (66%), 1.0 units/s, ETA 10s — unit 20\n',
      'progress: 30/30 units (100%), 1.0 units/s, ETA 0s — unit 30\n',
    ])
    p.log('x')
    expect(writes.at(-1)).toBe('x\n')
  })

  it('silent: writes nothing', () => {
    const {writes, stream} = fakeStream(true)
    const p = new Progress({stream, silent: true})
    p.update(1, 2)
    p.log('x')
    p.finish()
    expect(writes).toEqual([])
  })
})
