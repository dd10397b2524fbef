/**
 * `loadModel`: one weights file (or none) gives a `Model`, several give an `Ensemble` of them.
 */
import { Ensemble } from './ensemble';
import { Yolo5Error, show } from '../errors';
import { Model, type LoadModelOptions } from './model';

/** One weights file stays a single model; several make an ensemble. */
export function singleOrMany(weights: string | readonly string[]): string | readonly string[] {
  return Array.isArray(weights) && weights.length === 1 ? (weights[0] as string) : weights;
}

/** `loadModel` with several weights files: each is loaded with the same other options. */
export interface LoadEnsembleOptions extends Omit<LoadModelOptions, 'weights'> {
  weights: readonly string[];
}

/**
 * Builds a model from a config and/or weights. With `weights` as an array, loads each file and
 * returns an `Ensemble` of them (their classes must agree).
 */
export function loadModel(opts: LoadModelOptions): Promise<Model>;
export function loadModel(opts: LoadEnsembleOptions): Promise<Ensemble>;
export function loadModel(
  opts: Omit<LoadModelOptions, 'weights'> & { weights?: string | readonly string[] },
): Promise<Model | Ensemble>;
export function loadModel(
  opts: Omit<LoadModelOptions, 'weights'> & { weights?: string | readonly string[] },
): Promise<Model | Ensemble> {
  if (!Array.isArray(opts.weights)) return Model.create(opts as LoadModelOptions);
  return loadEnsemble(opts as LoadEnsembleOptions);
}

async function loadEnsemble(opts: LoadEnsembleOptions): Promise<Ensemble> {
  const files = opts.weights;
  if (files.length === 0 || files.some((f) => typeof f !== 'string')) {
    throw new Yolo5Error(
      'E_ARG',
      `Expected one or more weights files for weights but received ${show(files)}`,
      { value: files },
    );
  }
  const models: Model[] = [];
  // One after another: each load already uses the native thread pool.
  for (const weights of files) models.push(await Model.create({ ...opts, weights }));
  const ensemble = new Ensemble(models);
  if (models.length > 1) (opts.log ?? (() => {}))(`Ensemble created with ${files.join(', ')}`);
  return ensemble;
}
