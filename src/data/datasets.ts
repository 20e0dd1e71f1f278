/**
 * Prompt sets. A dataset is a file of prompts or a built-in name:
 *
 * - `.json`  a list of strings, or of objects with one of the prompt fields below
 * - `.jsonl` one JSON string or object per line (blank lines skipped)
 * - `.csv`   a header row; the prompt column is the first present of the prompt fields below;
 *            RFC 4180 quoting (quoted commas, newlines and "" escapes)
 * - `.txt`   one prompt per line (blank lines skipped)
 * - a built-in name (`jailbreakbench`, `advbench`, `harmful_val`, ...): `<name>.json` in the
 *   shared data folder beside the project (../shared/data, or SAHARA_DATA_DIR).
 *
 * Prompt fields, first present wins: goal, Goal, input, instruction, prompt.
 * Errors name the file, the line or element, and what is wrong.
 */
import {existsSync, readdirSync, readFileSync, statSync} from 'node:fs'
import {basename, extname, resolve} from 'node:path'

import {dataDir} from '../paths.js'

export const PROMPT_FIELDS = ['goal', 'Goal', 'input', 'instruction', 'prompt'] as const

export interface Dataset {
  /** A short name: the built-in name or the file's base name without extension. */
  name: string
  path: string
  prompts: string[]
}

export class DatasetError extends Error {
  override name = 'DatasetError'
}

const FORMATS = ['.json', '.jsonl', '.csv', '.txt']

/** Built-in dataset names: the .json files of the shared data folder. */
export function builtinDatasets(): string[] {
  const dir = dataDir()
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort()
}

/** Resolve a dataset argument to a file path, without reading it. */
export function resolveDataset(spec: string, cwd: string = process.cwd()): {name: string; path: string} {
  const trimmed = spec.trim()
  if (trimmed === '') throw new DatasetError('empty dataset name')
  const asPath = resolve(cwd, trimmed)
  if (existsSync(asPath)) {
    if (statSync(asPath).isDirectory()) throw new DatasetError(`${asPath}: is a directory, expected a prompt file`)
    return {name: basename(asPath, extname(asPath)), path: asPath}
  }

  if (/^[\w-]+$/.test(trimmed)) {
    const builtin = resolve(dataDir(), `${trimmed}.json`)
    if (existsSync(builtin)) return {name: trimmed, path: builtin}
    const known = builtinDatasets()
    throw new DatasetError(
      `dataset ${JSON.stringify(trimmed)}: no such file, and not a built-in name` +
        (known.length > 0 ? ` (built-in: ${known.join(', ')})` : ` (no built-ins: ${dataDir()} not found)`),
    )
  }

  throw new DatasetError(`dataset ${trimmed}: no such file (${asPath})`)
}

export function loadDataset(spec: string, cwd: string = process.cwd()): Dataset {
  const {name, path} = resolveDataset(spec, cwd)
  return {name, path, prompts: loadPrompts(path)}
}

/** Read the prompts of a file, by extension. */
export function loadPrompts(path: string): string[] {
  const ext = extname(path).toLowerCase()
  if (!FORMATS.includes(ext)) {
    throw new DatasetError(`${path}: unsupported format ${ext || '(no extension)'}; expected one of ${FORMATS.join(', ')}`)
  }

  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new DatasetError(`${path}: cannot read: ${(error as Error).message}`)
  }

  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1) // UTF-8 BOM
  const prompts =
    ext === '.json' ? parseJsonPrompts(text, path)
    : ext === '.jsonl' ? parseJsonlPrompts(text, path)
    : ext === '.csv' ? parseCsvPrompts(text, path)
    : parseTxtPrompts(text, path)
  if (prompts.length === 0) throw new DatasetError(`${path}: no prompts`)
  return prompts
}

/** The prompt of one JSON item: a string, or an object's first prompt field. */
function promptOf(item: unknown, where: string): string {
  let value: unknown = item
  if (item !== null && typeof item === 'object' && !Array.isArray(item)) {
    const record = item as Record<string, unknown>
    const field = PROMPT_FIELDS.find((f) => f in record)
    if (field === undefined) {
      const keys = Object.keys(record)
      throw new DatasetError(
        `${where}: object has no prompt field (expected one of ${PROMPT_FIELDS.join(', ')}; it has ${keys.length > 0 ? keys.join(', ') : 'no keys'})`,
      )
    }

    value = record[field]
    where = `${where}, field ${field}`
  }

  if (typeof value !== 'string') {
    throw new DatasetError(`${where}: expected a string prompt or an object with a prompt field, got ${describe(value)}`)
  }

  if (value.trim() === '') throw new DatasetError(`${where}: empty prompt`)
  return value
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`
}

export function parseJsonPrompts(text: string, path: string): string[] {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (error) {
    throw new DatasetError(`${path}: invalid JSON: ${(error as Error).message}`)
  }

  if (!Array.isArray(data)) throw new DatasetError(`${path}: expected a JSON list of prompts, got ${describe(data)}`)
  return data.map((item, i) => promptOf(item, `${path}: element [${i}]`))
}

export function parseJsonlPrompts(text: string, path: string): string[] {
  const prompts: string[] = []
  const lines = text.split(/\r?\n/)
  for (const [i, line] of lines.entries()) {
    if (line.trim() === '') continue
    let item: unknown
    try {
      item = JSON.parse(line)
    } catch (error) {
      throw new DatasetError(`${path}:${i + 1}: invalid JSON: ${(error as Error).message}`)
    }

    prompts.push(promptOf(item, `${path}:${i + 1}`))
  }

  return prompts
}

export function parseTxtPrompts(text: string, _path: string): string[] {
  return text
    .split(/\r?\n/)
    .filter((line) => line.trim() !== '')
}

/** A CSV record with the 1-based line it starts on. */
export interface CsvRecord {
  line: number
  fields: string[]
}

/** RFC 4180 CSV: comma-separated, fields optionally quoted, "" inside quotes is a quote. */
export function parseCsv(text: string, path: string): CsvRecord[] {
  const records: CsvRecord[] = []
  let fields: string[] = []
  let field = ''
  let line = 1
  let recordLine = 1
  let quoted = false
  let quoteLine = 0
  let atFieldStart = true
  let blank = true // nothing, not even a quote, on this record's line(s) yet

  const endRecord = () => {
    fields.push(field)
    if (!blank) records.push({line: recordLine, fields}) // a blank line is no record
    fields = []
    field = ''
    atFieldStart = true
    blank = true
  }

  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"'
          i++
        } else {
          quoted = false
          const next = text[i + 1]
          if (next !== undefined && next !== ',' && next !== '\n' && next !== '\r') {
            throw new DatasetError(`${path}:${line}: unexpected character ${JSON.stringify(next)} after a closing quote`)
          }
        }
      } else {
        if (c === '\n') line++
        field += c
      }

      continue
    }

    if (c !== '\n' && c !== '\r') blank = false
    if (c === '"' && atFieldStart) {
      quoted = true
      quoteLine = line
      atFieldStart = false
    } else if (c === ',') {
      fields.push(field)
      field = ''
      atFieldStart = true
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++
      endRecord()
      line++
      recordLine = line
    } else {
      if (c === '"') throw new DatasetError(`${path}:${line}: a quote inside an unquoted field (quote the whole field and double the quote)`)
      field += c
      atFieldStart = false
    }
  }

  if (quoted) throw new DatasetError(`${path}:${quoteLine}: unterminated quoted field`)
  if (!blank) endRecord()
  return records
}

export function parseCsvPrompts(text: string, path: string): string[] {
  const records = parseCsv(text, path)
  const header = records[0]
  if (header === undefined) throw new DatasetError(`${path}: empty CSV (no header row)`)
  const names = header.fields.map((f) => f.trim())
  const field = PROMPT_FIELDS.find((f) => names.includes(f))
  if (field === undefined) {
    throw new DatasetError(
      `${path}:${header.line}: no usable column: expected one of ${PROMPT_FIELDS.join(', ')}; the header has ${names.join(', ')}`,
    )
  }

  const column = names.indexOf(field)
  return records.slice(1).map((record) => {
    if (record.fields.length !== names.length) {
      throw new DatasetError(
        `${path}:${record.line}: ${record.fields.length} fields, but the header has ${names.length}`,
      )
    }

    const prompt = record.fields[column]
    if (prompt.trim() === '') throw new DatasetError(`${path}:${record.line}: empty prompt in column ${field}`)
    return prompt
  })
}
