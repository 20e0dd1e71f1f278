/**
 * A local sidecar process, started with execa:
 *
 *   $SAHARA_PYTHON (or <repo>/sidecar/.venv/bin/python) -m sahara_sidecar serve \
 *       --model DIR --host 127.0.0.1 --port 0 [--device D] [--dtype T]      (cwd <repo>/sidecar)
 *
 * When ready it prints exactly one JSON line on stdout,
 *   {"event":"listening","host":"127.0.0.1","port":N,"pid":N,"model":"..."},
 * and logs on stderr. `startSidecar` waits for that line (with a timeout, showing the tail of
 * stderr if the process dies or hangs first); `stop` sends SIGTERM, then SIGKILL after a grace
 * period. A detached sidecar (`sahara sidecar start`) writes stdout and stderr to files in the
 * state directory and outlives the CLI; its {pid, port, model} go into a state file.
 */
import {type ResultPromise, execa} from 'execa'
import {closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync} from 'node:fs'
import {resolve} from 'node:path'

import {writeFileAtomic} from '../orchestration/files.js'
import {sidecarDir} from '../paths.js'

export interface SidecarOptions {
  /** Directory or hub id, as the sidecar's --model. */
  model: string
  device?: string
  dtype?: string
  port?: number
  /** How long to wait for the listening line (ms). */
  startTimeoutMs?: number
  /** Called with each stderr line of an attached sidecar (e.g. to forward logs with --verbose). */
  onLog?: (line: string) => void
  /**
   * The bearer token the sidecar requires (given to it as SAHARA_TOKEN, never as an argument).
   * Without one, no token is required: SAHARA_TOKEN and SAHARA_TOKEN_FILE are not passed on.
   */
  token?: string
}

export interface ListeningEvent {
  event: 'listening'
  host: string
  port: number
  pid: number
  model: string
}

export class SidecarStartError extends Error {
  override name = 'SidecarStartError'
}

export function pythonInterpreter(): string {
  return process.env.SAHARA_PYTHON ?? resolve(sidecarDir, '.venv', 'bin', 'python')
}

export function serveArgs(options: SidecarOptions): string[] {
  const args = ['-m', 'sahara_sidecar', 'serve', '--model', options.model, '--host', '127.0.0.1', '--port', String(options.port ?? 0)]
  if (options.device) args.push('--device', options.device)
  if (options.dtype) args.push('--dtype', options.dtype)
  return args
}

/** The sidecar's environment on top of ours: the token as SAHARA_TOKEN, or none at all. */
export function sidecarEnv(options: SidecarOptions): Record<string, string | undefined> {
  return {PYTHONUNBUFFERED: '1', SAHARA_TOKEN: options.token, SAHARA_TOKEN_FILE: undefined}
}

function checkInterpreter(python: string): void {
  if (python.includes('/') && !existsSync(python)) {
    throw new SidecarStartError(
      `no Python interpreter at ${python}: set up the sidecar's environment first (see README), or set SAHARA_PYTHON`,
    )
  }
}

/** Parse the sidecar's ready line; undefined for any other line. */
export function parseListening(line: string): ListeningEvent | undefined {
  const trimmed = line.trim()
  if (!trimmed.startsWith('{')) return undefined
  try {
    const event = JSON.parse(trimmed) as Partial<ListeningEvent>
    if (event.event === 'listening' && typeof event.port === 'number' && event.port > 0) {
      return {event: 'listening', host: event.host ?? '127.0.0.1', port: event.port, pid: event.pid ?? 0, model: event.model ?? ''}
    }
  } catch {
    // not JSON: not the ready line
  }

  return undefined
}

/** Keeps the last lines of a stream, for error messages. */
class Tail {
  private lines: string[] = []
  private partial = ''
  constructor(private readonly max = 40) {}
  push(text: string, onLine?: (line: string) => void): void {
    const parts = (this.partial + text).split('\n')
    this.partial = parts.pop() ?? ''
    for (const line of parts) {
      onLine?.(line)
      this.lines.push(line)
      if (this.lines.length > this.max) this.lines.shift()
    }
  }

  text(): string {
    return [...this.lines, this.partial].filter((l) => l !== '').join('\n')
  }
}

export interface RunningSidecar {
  endpoint: string
  host: string
  port: number
  pid: number
  model: string
  stop(graceMs?: number): Promise<void>
}

/** Start a sidecar attached to this process; stop() it when done (execa also kills it if we exit). */
export async function startSidecar(options: SidecarOptions): Promise<RunningSidecar> {
  const python = pythonInterpreter()
  checkInterpreter(python)
  const timeoutMs = options.startTimeoutMs ?? 300_000
  // --exit-with-parent: execa's cleanup cannot run when this process is SIGKILLed; the sidecar then
  // notices it was orphaned and stops, instead of holding its port and the device's memory.
  const child = execa(python, [...serveArgs(options), '--exit-with-parent'], {
    cwd: sidecarDir,
    buffer: false,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    reject: false,
    cleanup: true,
    env: sidecarEnv(options),
  })
  const stderr = new Tail()
  child.stderr?.on('data', (data: Buffer) => stderr.push(data.toString('utf8'), options.onLog))

  const listening = await new Promise<ListeningEvent>((resolvePromise, reject) => {
    let stdoutPartial = ''
    let settled = false
    const settle = (fn: () => void) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      fn()
    }

    const timer = setTimeout(() => {
      settle(() => reject(new SidecarStartError(`sidecar did not report listening within ${timeoutMs / 1000} s\n${stderrBlock(stderr)}`)))
    }, timeoutMs)
    child.stdout?.on('data', (data: Buffer) => {
      stdoutPartial += data.toString('utf8')
      const lines = stdoutPartial.split('\n')
      stdoutPartial = lines.pop() ?? ''
      for (const line of lines) {
        const event = parseListening(line)
        if (event) settle(() => resolvePromise(event))
      }
    })
    void child.then((result) => {
      settle(() =>
        reject(
          new SidecarStartError(
            `sidecar exited before listening (${result.signal ? `signal ${result.signal}` : `exit code ${result.exitCode}`}` +
              `${result.failed && result.exitCode === undefined ? `: ${result.message}` : ''})\n${stderrBlock(stderr)}`,
          ),
        ),
      )
    })
  }).catch(async (error) => {
    await stopChild(child, 2000)
    throw error
  })

  return {
    endpoint: `${listening.host}:${listening.port}`,
    host: listening.host,
    port: listening.port,
    pid: child.pid ?? listening.pid,
    model: listening.model,
    stop: (graceMs = 8000) => stopChild(child, graceMs),
  }
}

function stderrBlock(tail: Tail): string {
  const text = tail.text()
  return text ? `sidecar stderr (last lines):\n${text}` : 'the sidecar wrote nothing on stderr'
}

async function stopChild(child: ResultPromise, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  try {
    await child
  } finally {
    clearTimeout(timer)
  }
}

// ---- detached sidecars and their state file -------------------------------------------------

export interface SidecarState {
  pid: number
  port: number
  host: string
  model: string
  started_at: string
  log: string
}

export function stateFile(stateDir: string): string {
  return resolve(stateDir, 'sidecar.json')
}

export function readState(stateDir: string): SidecarState | undefined {
  const file = stateFile(stateDir)
  if (!existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as SidecarState
  } catch (error) {
    throw new SidecarStartError(`${file}: unreadable state file (${(error as Error).message}); delete it if no sidecar is running`)
  }
}

export function clearState(stateDir: string): void {
  rmSync(stateFile(stateDir), {force: true})
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Start a sidecar that outlives this process; record it in <stateDir>/sidecar.json. */
export async function startDetached(options: SidecarOptions & {stateDir: string}): Promise<SidecarState> {
  const python = pythonInterpreter()
  checkInterpreter(python)
  const existing = readState(options.stateDir)
  if (existing && isAlive(existing.pid)) {
    throw new SidecarStartError(
      `a sidecar is already running (pid ${existing.pid}, port ${existing.port}, model ${existing.model}); stop it first with \`sahara sidecar stop\``,
    )
  }

  mkdirSync(options.stateDir, {recursive: true})
  const outFile = resolve(options.stateDir, 'sidecar.stdout')
  const logFile = resolve(options.stateDir, 'sidecar.log')
  const out = openSync(outFile, 'w')
  const err = openSync(logFile, 'w')
  const child = execa(python, serveArgs(options), {
    cwd: sidecarDir,
    detached: true,
    stdin: 'ignore',
    // Plain file descriptors, so the sidecar writes straight to the files and nothing in this
    // process stays attached to it (execa's {file} targets are piped through the parent).
    // execa's types only admit literal fd numbers; any open descriptor works at run time.
    stdout: out as 3,
    stderr: err as 3,
    reject: false,
    env: sidecarEnv(options),
  })
  closeSync(out)
  closeSync(err)
  let exited: string | undefined
  void child.then((r) => {
    exited = r.signal ? `signal ${r.signal}` : `exit code ${r.exitCode}`
  })

  const timeoutMs = options.startTimeoutMs ?? 300_000
  const until = Date.now() + timeoutMs
  try {
    while (Date.now() < until) {
      const event = readFileSync(outFile, 'utf8').split('\n').map(parseListening).find((e) => e !== undefined)
      if (event) {
        const state: SidecarState = {
          pid: child.pid ?? event.pid,
          port: event.port,
          host: event.host,
          model: event.model || options.model,
          started_at: new Date().toISOString(),
          log: logFile,
        }
        writeFileAtomic(stateFile(options.stateDir), `${JSON.stringify(state, null, 2)}\n`)
        child.unref()
        return state
      }

      if (exited) break
      await new Promise((r) => setTimeout(r, 100))
    }
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  }

  const log = readFileSync(logFile, 'utf8').trim().split('\n').slice(-40).join('\n')
  if (!exited) child.kill('SIGKILL')
  throw new SidecarStartError(
    `sidecar ${exited ? `exited before listening (${exited})` : `did not report listening within ${timeoutMs / 1000} s`}\n` +
      (log ? `sidecar stderr (last lines, full log ${logFile}):\n${log}` : 'the sidecar wrote nothing on stderr'),
  )
}

/** Stop a sidecar by pid: SIGTERM, then SIGKILL after the grace period. True if it was running. */
export async function stopPid(pid: number, graceMs = 5000): Promise<boolean> {
  if (!isAlive(pid)) return false
  process.kill(pid, 'SIGTERM')
  const until = Date.now() + graceMs
  while (Date.now() < until) {
    if (!isAlive(pid)) return true
    await new Promise((r) => setTimeout(r, 100))
  }

  if (isAlive(pid)) process.kill(pid, 'SIGKILL')
  return true
}
