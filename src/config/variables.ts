/**
 * Variables in sweeps, so one file serves many hosts: `${NAME}` or `${NAME:-default}` inside
 * any string value. A value comes from the environment, else from the sweep's top-level
 * `vars:` mapping, else from the `:-` default; a variable with none of these is an error at
 * the place it is used (file:line:col, field path). `$${` writes a literal `${`.
 *
 *   vars:
 *     MODEL: meta-llama/Llama-2-7b-chat-hf      # MODEL=/models/llama2 sahara run ... overrides
 *   jobs:
 *     - kind: ships
 *       matrix: {model: '${MODEL}', dataset: '${DATASET:-jailbreakbench}'}
 */
import {type Node, isMap, isScalar, isSeq, visit} from 'yaml'

import {type Source, errorAt} from './fields.js'

const REFERENCE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g
const MALFORMED = /\$\{(?![A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\})/

export type Variables = Readonly<Record<string, string | undefined>>

/** Read `vars:` (a mapping of names to scalars) into plain strings. */
export function readVars(source: Source, node: Node | null | undefined): Record<string, string> {
  if (node === undefined || node === null) return {}
  if (!isMap(node)) throw errorAt(source, node, 'vars', 'expected a mapping of variable names to values')
  const vars: Record<string, string> = {}
  for (const pair of node.items) {
    const key = pair.key as Node | null
    const value = pair.value as Node | null
    if (!isScalar(key) || typeof key.value !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key.value)) {
      throw errorAt(source, key, 'vars', 'variable names are letters, digits and _, not starting with a digit')
    }

    if (!isScalar(value) || value.value === null || typeof value.value === 'object') {
      throw errorAt(source, value ?? key, `vars.${key.value}`, 'a variable is a single value (string or number)')
    }

    vars[key.value] = String(value.value)
  }

  return vars
}

/** Replace every reference in the string scalars under `root`, in place; returns the names used. */
export function substitute(source: Source, root: Node, lookup: (name: string) => string | undefined): Set<string> {
  const used = new Set<string>()
  visit(root, {
    Scalar(key, node, path) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('${')) return
      const where = fieldPath([...path, node])
      if (MALFORMED.test(node.value.replaceAll('$${', ''))) {
        throw errorAt(source, node, where, `malformed variable reference in ${JSON.stringify(node.value)}; write \${NAME} or \${NAME:-default}`)
      }

      node.value = node.value.replace(REFERENCE, (match, name: string | undefined, fallback: string | undefined) => {
        if (name === undefined) return '${' // the $${ escape
        used.add(name)
        const value = lookup(name) ?? fallback
        if (value === undefined) {
          throw errorAt(source, node, where, `variable \${${name}} has no value: set it in the environment or under vars:, or write \${${name}:-default}`)
        }

        return value
      })
    },
  })
  return used
}

/** The field path of a node from visit()'s ancestry, e.g. jobs[1].matrix.model. */
function fieldPath(path: readonly unknown[]): string {
  let out = ''
  for (let i = 0; i < path.length; i++) {
    const step = path[i]
    const next = path[i + 1]
    if (isSeq(step) && next !== undefined) out += `[${step.items.indexOf(next as never)}]`
    else if (isMap(step) && next !== undefined) {
      const pair = next as {key?: unknown}
      const key = isScalar(pair.key) ? String(pair.key.value) : '?'
      out += out ? `.${key}` : key
    }
  }

  return out
}
