/**
 * The part every job kind reads the same way: its `matrix` of models × datasets × methods ×
 * eps × templates, each axis a value or a list, every value checked where it was written.
 */
import type {Fields, Located} from '../config/fields.js'
import {type Dataset, DatasetError, loadDataset} from '../data/datasets.js'
import {type ResolvedModel, ModelError, modelLabel, resolveModel} from '../models.js'
import {HeadNameError} from '../science/heads.js'
import type {ParseContext} from './registry.js'
import {METHODS, type Method, TEMPLATES, type Template, formatEps} from './ships.js'

export const MATRIX_KEYS = ['model', 'dataset', 'method', 'eps', 'template'] as const

export interface AblationMatrix {
  models: ResolvedModel[]
  datasets: Dataset[]
  methods: Method[]
  epsList: number[]
  templates: Template[]
}

/** Run `fn` on a value; a model, dataset or head-name error becomes a ConfigError at that value. */
export function located<T, R>(fields: Fields, item: Located<T>, fn: (value: T) => R): R {
  try {
    return fn(item.value)
  } catch (error) {
    if (error instanceof ModelError || error instanceof DatasetError || error instanceof HeadNameError) {
      throw fields.errorAt(item, error.message)
    }

    throw error
  }
}

/** Read and check the job's `matrix` (`what` names it in errors, e.g. "a ships matrix"). */
export function parseMatrix(fields: Fields, context: ParseContext, what: string): AblationMatrix {
  const matrix = fields.sub('matrix')
  matrix.onlyKeys(MATRIX_KEYS, what)
  return {
    models: matrix.stringList('model').map((m) => located(fields, m, (v) => resolveModel(v, context.baseDir, {remote: context.remoteModels}))),
    datasets: matrix.stringList('dataset').map((d) => located(fields, d, (v) => loadDataset(v, context.baseDir))),
    methods: matrix.stringList('method', {default: ['ua'], oneOf: METHODS}).map((m) => m.value as Method),
    epsList: matrix.numberList('eps', {default: [1e-5], positive: true}).map((e) => e.value),
    templates: matrix.stringList('template', {default: ['paper'], oneOf: TEMPLATES}).map((t) => t.value as Template),
  }
}

/** One cell of the matrix, with the parts of its job name (prefix-model-dataset-method-eps[-template]). */
export interface MatrixCell {
  model: ResolvedModel
  dataset: Dataset
  method: Method
  eps: number
  template: Template
  nameParts: string[]
}

/** The cross product of the matrix, in a fixed order (models outermost, templates innermost). */
export function* matrixCells(matrix: AblationMatrix, prefix: string): Generator<MatrixCell> {
  for (const model of matrix.models)
    for (const dataset of matrix.datasets)
      for (const method of matrix.methods)
        for (const eps of matrix.epsList)
          for (const template of matrix.templates) {
            const nameParts = [prefix, modelLabel(model.name), dataset.name, method, formatEps(eps)]
            if (matrix.templates.length > 1 || template !== 'paper') nameParts.push(template)
            yield {model, dataset, method, eps, template, nameParts}
          }
}
