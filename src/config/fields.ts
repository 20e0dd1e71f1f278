/**
 * Typed reading of YAML config nodes that never loses where a value came from: every error is
 * a ConfigError that says `file:line:col`, the field path (e.g. `jobs[1].matrix.method[0]`) and
 * what is wrong. Job kinds read their options through `Fields`, which layers maps (a sweep's
 * `defaults` under each job) so a value is reported at the place it was written.
 */
import {type LineCounter, type Node, isAlias, isMap, isScalar, isSeq, type Pair, type Scalar, type YAMLMap} from 'yaml'

export class ConfigError extends Error {
  override name = 'ConfigError'
  constructor(
    readonly file: string,
    readonly line: number,
    readonly col: number,
    readonly path: string,
    readonly detail: string,
  ) {
    super(`${file}:${line}:${col}: ${path ? `${path}: ` : ''}${detail}`)
  }
}

/** The file a node belongs to, with the line counter that maps offsets to line:col. */
export interface Source {
  file: string
  lines: LineCounter
}

/** A value as written: its node and its path in the document. */
export interface Located<T> {
  value: T
  node: Node | null
  path: string
}

export function errorAt(source: Source, node: Node | null | undefined, path: string, detail: string): ConfigError {
  const offset = node?.range?.[0] ?? 0
  const {line, col} = source.lines.linePos(offset)
  return new ConfigError(source.file, line, col, path, detail)
}

export function describeNode(node: unknown): string {
  if (node === null || node === undefined) return 'nothing'
  if (isMap(node)) return 'a mapping'
  if (isSeq(node)) return 'a list'
  if (isScalar(node)) {
    const v = node.value
    if (v === null) return 'null'
    return `${typeof v} ${JSON.stringify(v)}`
  }

  if (isAlias(node)) return `the alias *${node.source} (aliases are not supported: write the value out, or use defaults: or vars:)`
  return 'an unsupported YAML node'
}

interface Entry {
  key: string
  keyNode: Node | null
  value: Node | null
  path: string
}

function entriesOf(source: Source, map: YAMLMap, basePath: string): Entry[] {
  return map.items.map((pair: Pair) => {
    const keyNode = pair.key as Node | null
    if (!isScalar(keyNode) || typeof keyNode.value !== 'string') {
      throw errorAt(source, keyNode, basePath, `keys must be plain strings, got ${describeNode(keyNode)}`)
    }

    const key = keyNode.value
    return {key, keyNode, value: (pair.value as Node | null) ?? null, path: basePath ? `${basePath}.${key}` : key}
  })
}

export function pathJoin(base: string, key: string | number): string {
  if (typeof key === 'number') return `${base}[${key}]`
  return base ? `${base}.${key}` : key
}

/**
 * Maps read as one: later layers override earlier ones key by key (a job over `defaults`).
 * `where` is where to point when a required key is missing (the innermost map).
 */
export class Fields {
  private readonly entries = new Map<string, Entry>()

  constructor(
    readonly source: Source,
    private readonly layers: {map: YAMLMap; path: string}[],
    private readonly where: {node: Node | null; path: string},
  ) {
    for (const layer of layers) for (const e of entriesOf(source, layer.map, layer.path)) this.entries.set(e.key, e)
  }

  static ofMap(source: Source, node: Node | null, path: string): Fields {
    if (!isMap(node)) throw errorAt(source, node, path, `expected a mapping, got ${describeNode(node)}`)
    return new Fields(source, [{map: node, path}], {node, path})
  }

  keys(): string[] {
    return [...this.entries.keys()]
  }

  has(key: string): boolean {
    return this.entries.has(key)
  }

  /** Every key must be one of `allowed`; the error lists them. */
  onlyKeys(allowed: readonly string[], what: string): void {
    for (const e of this.entries.values()) {
      if (!allowed.includes(e.key)) {
        throw errorAt(this.source, e.keyNode, e.path, `unknown key ${JSON.stringify(e.key)} for ${what} (allowed: ${allowed.join(', ')})`)
      }
    }
  }

  error(key: string, detail: string): ConfigError {
    const e = this.entries.get(key)
    return e ? errorAt(this.source, e.value ?? e.keyNode, e.path, detail) : errorAt(this.source, this.where.node, pathJoin(this.where.path, key), detail)
  }

  errorAt(located: Located<unknown>, detail: string): ConfigError {
    return errorAt(this.source, located.node, located.path, detail)
  }

  private need(key: string): Entry {
    const e = this.entries.get(key)
    if (!e) throw errorAt(this.source, this.where.node, this.where.path, `missing required key ${JSON.stringify(key)}`)
    return e
  }

  /** A nested map, layered the same way (e.g. a job's `matrix` over `defaults.matrix`). */
  sub(key: string): Fields {
    const layers: {map: YAMLMap; path: string}[] = []
    for (const layer of this.layers) {
      const e = entriesOf(this.source, layer.map, layer.path).find((entry) => entry.key === key)
      if (!e) continue
      if (!isMap(e.value)) throw errorAt(this.source, e.value ?? e.keyNode, e.path, `expected a mapping, got ${describeNode(e.value)}`)
      layers.push({map: e.value, path: e.path})
    }

    const own = this.entries.get(key)
    return new Fields(this.source, layers, own ? {node: own.value, path: own.path} : {node: this.where.node, path: pathJoin(this.where.path, key)})
  }

  string(key: string, options: {default?: string; oneOf?: readonly string[]; pattern?: RegExp; patternHint?: string} = {}): Located<string> {
    if (!this.has(key) && options.default !== undefined) return {value: options.default, node: null, path: key}
    const e = this.need(key)
    return readString(this.source, e.value, e.path, options)
  }

  optionalString(key: string): Located<string> | undefined {
    return this.has(key) ? this.string(key) : undefined
  }

  number(key: string, options: NumberRule & {default?: number} = {}): Located<number> {
    if (!this.has(key) && options.default !== undefined) return {value: options.default, node: null, path: key}
    const e = this.need(key)
    return readNumber(this.source, e.value, e.path, key, options)
  }

  /** A scalar or a list of scalars, as a non-empty list. */
  stringList(key: string, options: {default?: string[]; oneOf?: readonly string[]} = {}): Located<string>[] {
    if (!this.has(key) && options.default !== undefined) return options.default.map((value) => ({value, node: null, path: key}))
    const e = this.need(key)
    return listOf(this.source, e, (node, path) => readString(this.source, node, path, options))
  }

  numberList(key: string, options: NumberRule & {default?: number[]} = {}): Located<number>[] {
    if (!this.has(key) && options.default !== undefined) return options.default.map((value) => ({value, node: null, path: key}))
    const e = this.need(key)
    return listOf(this.source, e, (node, path) => readNumber(this.source, node, path, key, options))
  }
}

export interface NumberRule {
  integer?: boolean
  /** > 0 and finite */
  positive?: boolean
  min?: number
}

function listOf<T>(source: Source, e: Entry, read: (node: Node | null, path: string) => Located<T>): Located<T>[] {
  if (isSeq(e.value)) {
    if (e.value.items.length === 0) throw errorAt(source, e.value, e.path, 'empty list: give at least one value')
    return e.value.items.map((item, i) => read(item as Node | null, pathJoin(e.path, i)))
  }

  return [read(e.value, e.path)]
}

function readString(
  source: Source,
  node: Node | null,
  path: string,
  options: {oneOf?: readonly string[]; pattern?: RegExp; patternHint?: string},
): Located<string> {
  if (!isScalar(node) || typeof node.value !== 'string') {
    throw errorAt(source, node, path, `expected a string, got ${describeNode(node)}`)
  }

  const value = node.value
  if (options.oneOf && !options.oneOf.includes(value)) {
    throw errorAt(source, node, path, `${JSON.stringify(value)} is not one of ${options.oneOf.join(', ')}`)
  }

  if (options.pattern && !options.pattern.test(value)) {
    throw errorAt(source, node, path, `${JSON.stringify(value)} is not valid: ${options.patternHint ?? `expected ${options.pattern}`}`)
  }

  return {value, node, path}
}

function readNumber(source: Source, node: Node | null, path: string, key: string, rule: NumberRule): Located<number> {
  if (!isScalar(node) || typeof (node as Scalar).value !== 'number') {
    throw errorAt(source, node, path, `expected a number, got ${describeNode(node)}`)
  }

  const value = (node as Scalar<number>).value
  if (rule.positive && !(Number.isFinite(value) && value > 0)) {
    throw errorAt(source, node, path, `${key} must be a positive finite number, got ${value}`)
  }

  if (!Number.isFinite(value)) throw errorAt(source, node, path, `${key} must be finite, got ${value}`)
  if (rule.integer && !Number.isInteger(value)) throw errorAt(source, node, path, `${key} must be an integer, got ${value}`)
  if (rule.min !== undefined && value < rule.min) throw errorAt(source, node, path, `${key} must be >= ${rule.min}, got ${value}`)
  return {value, node, path}
}
