/**
 * `Ensemble`: several models run as one. Each model's decoded output on the same letterboxed batch
 * (with test-time augmentation when asked) is concatenated before one NMS, as the reference's
 * ensemble does. The models must agree on their classes; the letterbox pads to the largest stride.
 */
import { Yolo5Error } from '../errors';
import type { Model } from './model';
import type { NativeImage, NativePredictOptions } from '../native/addon';

/** Where a model came from, for messages: its weights file, else its config. */
function origin(model: Model): string {
  return model.transfer?.file ?? model.source.file;
}

/** Names that are just the class indices ("0", "1", …) carry no information to compare. */
function knownNames(model: Model): boolean {
  return model.names.some((n, i) => n !== String(i));
}

function describe(model: Model): string {
  const names = knownNames(model) ? ` (${model.names.join(', ')})` : '';
  return `${origin(model)} has ${model.nc} classes${names}`;
}

export class Ensemble {
  /** The members, in the order their outputs are concatenated. */
  readonly models: readonly Model[];
  readonly nc: number;
  /** The first member's names (all members with known names agree). */
  readonly names: string[];
  /** The largest stride of any member: images are letterboxed to multiples of it. */
  readonly stride: number;

  /** Groups loaded models; throws E_ENSEMBLE when they disagree on classes. */
  constructor(models: readonly Model[]) {
    if (models.length === 0)
      throw new Yolo5Error('E_ARG', 'Expected at least one model for an ensemble but received []');
    const first = models[0]!;
    for (const m of models.slice(1)) {
      const namesDiffer =
        knownNames(first) &&
        knownNames(m) &&
        (m.names.length !== first.names.length || m.names.some((n, i) => n !== first.names[i]));
      if (m.nc !== first.nc || namesDiffer) {
        throw new Yolo5Error(
          'E_ENSEMBLE',
          `Ensemble models must agree on their classes but ${describe(first)} and ${describe(m)}`,
          { file: origin(m), value: { [origin(first)]: first.names, [origin(m)]: m.names } },
        );
      }
    }
    this.models = [...models];
    this.nc = first.nc;
    this.names = knownNames(first) ? first.names : (models.find(knownNames) ?? first).names;
    this.stride = Math.max(...models.map((m) => Math.max(...m.info().stride)));
  }

  /**
   * Low-level inference as `Model.predict`, with every member's raw predictions joined before
   * one NMS. The call holds every member's lock while it runs.
   */
  async predict(images: NativeImage[], opts: NativePredictOptions) {
    const [first, ...rest] = this.models;
    if (rest.length === 0) return first!.predict(images, opts);
    if (opts.loss)
      throw new Yolo5Error('E_ARG', 'The loss is computed for one model, not for an ensemble');
    return first!.predict(images, { ...opts, ensemble: rest.map((m) => m.nativeHandle()) });
  }
}

/** A model or an ensemble: what detect and val run. */
export type Predictor = Model | Ensemble;

/** The stride images are padded to for a model or an ensemble. */
export function predictorStride(p: Predictor): number {
  return p instanceof Ensemble ? p.stride : Math.max(...p.info().stride);
}

/** The device a model or an ensemble runs on (an ensemble's members share one). */
export function predictorDevice(p: Predictor): string {
  return p instanceof Ensemble ? p.models[0]!.device : p.device;
}
