/**
 * `--device` as the reference spells it: 'cpu', '0' (CUDA device 0), 'cuda', 'cuda:1'. One device
 * per run: several ('0,1', DDP in the reference) are refused. A CUDA device must be visible to the
 * loaded LibTorch (a CPU build sees none) — checked here so the error names the option.
 */
import { Yolo5Error, show } from '../errors';
import { native } from './addon';

export type DeviceSpec = string | number;

/**
 * 'cpu' or 'cuda:N'; throws E_ARG naming `what` for anything else or a CUDA device not there.
 * No device given: `YOLO5_DEVICE` when set (scripts/gpu-check.sh runs the test suite on a GPU
 * with it), else the CPU.
 */
export function parseDevice(spec: DeviceSpec | undefined, what = 'device'): string {
  if ((spec === undefined || spec === '') && process.env.YOLO5_DEVICE)
    return parseDevice(process.env.YOLO5_DEVICE, 'YOLO5_DEVICE');
  if (spec === undefined || spec === '') return 'cpu';
  const s = String(spec).trim().toLowerCase();
  let device: string | undefined;
  if (s === 'cpu') device = 'cpu';
  else if (/^\d+$/.test(s)) device = `cuda:${Number(s)}`;
  else if (s === 'cuda') device = 'cuda:0';
  else if (/^cuda:\d+$/.test(s)) device = `cuda:${Number(s.slice(5))}`;
  else if (/^\d+(,\d+)+$/.test(s))
    throw new Yolo5Error(
      'E_ARG',
      `${what} ${show(spec)}: several devices (the reference's DDP) are not supported; pass one, e.g. 0`,
      { value: spec },
    );
  if (device === undefined)
    throw new Yolo5Error(
      'E_ARG',
      `Expected cpu, a CUDA device index (0) or cuda:N for ${what} but received ${show(spec)}`,
      { value: spec },
    );
  if (device !== 'cpu') {
    const addon = native();
    const cuda = addon.cudaInfo();
    const index = Number(device.slice(5));
    if (!cuda.available)
      throw new Yolo5Error(
        'E_ARG',
        `${what} ${show(spec)}: CUDA is not available to LibTorch ${addon.libtorchVersion} here ` +
          `(${addon.buildInfo().cudaLinked ? 'a CUDA build, but no device or driver was found' : 'a CPU-only build'}); use cpu`,
        { value: spec },
      );
    if (index >= cuda.deviceCount)
      throw new Yolo5Error(
        'E_ARG',
        `${what} ${show(spec)}: only ${cuda.deviceCount} CUDA device(s) here (0…${cuda.deviceCount - 1})`,
        { value: spec },
      );
  }
  return device;
}
