/**
 * The AMP self-check before training, as the reference's check_amp: one image through the model
 * in fp32 and under autocast; the decoded boxes (x, y, w, h over the image's size) must agree
 * within 0.1, else training falls back to fp32 with a warning. The image is the first training
 * image as the loader prepares it (no mosaic), padded to the model's stride.
 */
import type { Model } from '../model/model';
import { nativeCall, type NativeAmp, type NativeTrainer } from '../native/addon';

/** The reference's tolerance: allclose(xywhn, atol=0.1). */
export const AMP_CHECK_ATOL = 0.1;

/** An HWC RGB uint8 image as a (1, 3, H, W) float input in [0, 1], padded with grey to `stride`. */
function toInput(
  img: { width: number; height: number; data: Uint8Array },
  stride: number,
): { data: Float32Array; shape: number[] } {
  const H = Math.ceil(img.height / stride) * stride;
  const W = Math.ceil(img.width / stride) * stride;
  const data = new Float32Array(3 * H * W).fill(114 / 255);
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const src = (y * img.width + x) * 3;
      for (let c = 0; c < 3; c++) data[(c * H + y) * W + x] = img.data[src + c]! / 255;
    }
  }
  return { data, shape: [1, 3, H, W] };
}

/** True when `amp` passes (within `atol`: the reference's unless a test asks); logs the outcome. */
export async function ampSelfCheck(
  model: Model,
  trainer: NativeTrainer,
  amp: NativeAmp,
  log: (line: string) => void,
  atol = AMP_CHECK_ATOL,
): Promise<boolean> {
  const img = await nativeCall('AMP check', () => trainer.sample(0, 0, false));
  const { data, shape } = toInput(img, Math.max(...model.info().stride));
  const r = await nativeCall('AMP check', () => model.nativeHandle().ampCheck(data, shape, amp));
  if (r.finite && r.maxDiff <= atol) {
    log(`AMP: checks passed (${amp}: boxes within ${r.maxDiff.toExponential(1)} of fp32, xywhn)`);
    return true;
  }
  log(
    `WARNING: AMP checks failed (${amp}: ${r.finite ? `boxes differ from fp32 by up to ${r.maxDiff.toFixed(3)} xywhn, over ${atol}` : 'non-finite outputs'}): training in fp32`,
  );
  return false;
}
