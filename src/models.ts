/**
 * Model names. `organism` and `organism-natural` are the embedded models committed under
 * <repo>/models/; any other value is a local directory if it exists, else a Hugging Face hub id
 * (which the sidecar resolves from its cache or the network of its host).
 */
import {existsSync, readFileSync, statSync} from 'node:fs'
import {resolve} from 'node:path'

import {modelsDir} from './paths.js'
import type {Geometry} from './science/heads.js'

export const EMBEDDED_MODELS = ['organism', 'organism-natural'] as const

export interface ResolvedModel {
  /** What the user wrote. */
  name: string
  /** What the sidecar is given as --model: an absolute directory or a hub id. */
  source: string
  /** remote: served by a sidecar at --endpoint, which loaded it on its own host; not checked here. */
  kind: 'embedded' | 'local' | 'hub' | 'remote'
}

export class ModelError extends Error {
  override name = 'ModelError'
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/

export function resolveModel(value: string, cwd: string = process.cwd(), options: {remote?: boolean} = {}): ResolvedModel {
  const name = value.trim()
  if (name === '') throw new ModelError('empty model name')
  if (options.remote) return {name, source: name, kind: 'remote'}

  if ((EMBEDDED_MODELS as readonly string[]).includes(name)) {
    const dir = resolve(modelsDir, name)
    if (!existsSync(resolve(dir, 'config.json'))) {
      throw new ModelError(`embedded model ${name}: ${dir} has no config.json (has the organism been trained and committed?)`)
    }

    return {name, source: dir, kind: 'embedded'}
  }

  const local = resolve(cwd, name)
  if (existsSync(local)) {
    if (!statSync(local).isDirectory()) throw new ModelError(`model ${name}: ${local} is a file, expected a model directory`)
    if (!existsSync(resolve(local, 'config.json'))) {
      throw new ModelError(`model ${name}: ${local} has no config.json (not a Hugging Face model directory)`)
    }

    return {name, source: local, kind: 'local'}
  }

  const looksLikePath = name.startsWith('.') || name.startsWith('/') || name.startsWith('~') || name.split('/').length > 2
  if (looksLikePath || !HUB_ID.test(name)) {
    throw new ModelError(
      `model ${JSON.stringify(name)}: no such directory (${local}), and not a hub id (owner/name); ` +
        `embedded models: ${EMBEDDED_MODELS.join(', ')}`,
    )
  }

  return {name, source: name, kind: 'hub'}
}

/** A short, filesystem-safe label for a model, used in job names and output folders. */
export function modelLabel(name: string): string {
  const base = name.replace(/\/+$/, '').split('/').pop() ?? name
  return base.replace(/[^\w.-]+/g, '_')
}

/**
 * L and H of a model whose config.json is here (embedded or local), so head indices can be
 * checked before any work; undefined for hub and remote models (known only once served).
 * A multimodal config's text part (text_config) is the one with the attention heads.
 */
export function localGeometry(model: ResolvedModel): Geometry | undefined {
  if (model.kind !== 'embedded' && model.kind !== 'local') return undefined
  const file = resolve(model.source, 'config.json')
  let config: Record<string, unknown>
  try {
    config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
  } catch (error) {
    throw new ModelError(`model ${model.name}: cannot read ${file}: ${(error as Error).message}`)
  }

  const text = (typeof config.text_config === 'object' && config.text_config !== null ? config.text_config : config) as Record<string, unknown>
  const numLayers = text.num_hidden_layers
  const numHeads = text.num_attention_heads
  if (!(Number.isInteger(numLayers) && Number.isInteger(numHeads))) {
    throw new ModelError(`model ${model.name}: ${file} has no integer num_hidden_layers and num_attention_heads`)
  }

  return {numLayers: numLayers as number, numHeads: numHeads as number}
}
