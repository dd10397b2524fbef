/**
 * Mixed precision: what `amp` ('auto' | 'bf16' | 'fp16' | 'off') means on a device. CUDA: auto is
 * fp16 autocast with loss scaling (the reference's AMP). CPU: LibTorch's autocast is bfloat16
 * only; auto turns it on where the CPU does bf16 in hardware (avx512_bf16 or AMX-BF16, from
 * cpuid) and stays fp32 elsewhere: emulated bf16 measured 11–15× slower than fp32 (LibTorch 1.13,
 * AVX2 Zen 3, yolov5n 256 px batch 16) and less accurate than bf16 hardware.
 */
import { Yolo5Error, show } from '../errors';
import { AMP_MODES, checkChoice, type AmpMode } from '../options';
import { native, type NativeAmp } from './addon';

/**
 * Whether this CPU does bf16 arithmetic in hardware. `YOLO5_CPU_BF16=1|0` overrides the cpuid
 * answer (for tests, or a virtual machine that hides a flag).
 */
export function cpuHasBf16(): boolean {
  const forced = process.env.YOLO5_CPU_BF16;
  if (forced === '1' || forced === '0') return forced === '1';
  return native().cpuFeatures().bf16;
}

export interface AmpChoice {
  /** What the native side runs. */
  amp: NativeAmp;
  /** One line to log about the choice (a note or a WARNING), when there is something to say. */
  note?: string;
}

/** The concrete mode for `device` ('cpu' or 'cuda:N'); fp16 on the CPU is an E_ARG error. */
export function resolveAmp(value: unknown, device: string, name = 'amp'): AmpChoice {
  const mode: AmpMode = checkChoice(name, value, AMP_MODES);
  if (device !== 'cpu') return { amp: mode === 'auto' ? 'fp16' : mode };
  if (mode === 'fp16') {
    throw new Yolo5Error(
      'E_ARG',
      `Expected auto, bf16 or off for ${name} on the CPU but received ${show(value)}: LibTorch's CPU autocast is bfloat16 only (fp16 needs a CUDA device)`,
      { value },
    );
  }
  if (mode === 'off') return { amp: 'off' };
  const hardware = cpuHasBf16();
  if (mode === 'bf16') {
    return hardware
      ? { amp: 'bf16' }
      : {
          amp: 'bf16',
          note: `WARNING: ${name} bf16 on a CPU without bf16 hardware (avx512_bf16 or AMX): it runs emulated, about 10× slower than fp32 and less accurate than bf16 hardware (LibTorch accumulates its convolutions in bf16 there)`,
        };
  }
  return hardware
    ? { amp: 'bf16', note: 'AMP: bf16 autocast (this CPU has bf16 hardware)' }
    : {
        amp: 'off',
        note: 'AMP: fp32 (this CPU has no bf16 hardware, avx512_bf16 or AMX; --amp bf16 would run emulated)',
      };
}
