/** Every error yolo5 throws on purpose: a stable `code`, and where the problem is when known. */
export type Yolo5ErrorCode =
  | 'E_ARG' // an option value is wrong
  | 'E_FILE' // a file is missing or unreadable
  | 'E_YAML' // a yaml file does not parse
  | 'E_MODEL_CFG' // a model config is wrong (row, module, args)
  | 'E_FREEZE' // a freeze spec is wrong or matches nothing
  | 'E_WEIGHTS' // weights do not fit the model
  | 'E_ENSEMBLE' // an ensemble's models disagree (classes)
  | 'E_CHECKPOINT' // a checkpoint file is malformed or unsafe
  | 'E_DATA' // a data yaml or data set is wrong
  | 'E_DATA_LABEL' // a label file row is wrong
  | 'E_EVOLVE' // an evolve folder (evolve.csv, evolve_opt.yaml) is wrong or already in use
  | 'E_NATIVE' // the native addon failed or could not be loaded
  | 'E_DISPOSED' // a model or trainer was used after dispose()
  | 'E_BUSY' // a synchronous change to a model or trainer while a call is using it
  | 'E_ABORTED'; // the caller aborted

export interface Yolo5ErrorDetails {
  file?: string;
  line?: number;
  /** Row index in a model config (`backbone` + `head`, counted from 0 like `model.{i}`). */
  row?: number;
  value?: unknown;
  cause?: unknown;
}

export class Yolo5Error extends Error {
  readonly code: Yolo5ErrorCode;
  declare readonly file?: string;
  declare readonly line?: number;
  declare readonly row?: number;
  declare readonly value?: unknown;

  constructor(code: Yolo5ErrorCode, message: string, details: Yolo5ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'Yolo5Error';
    this.code = code;
    if (details.file !== undefined) this.file = details.file;
    if (details.line !== undefined) this.line = details.line;
    if (details.row !== undefined) this.row = details.row;
    if (details.value !== undefined) this.value = details.value;
  }
}

/** Formats a value for messages the way users typed it: strings quoted, the rest as JSON. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  try {
    const s = JSON.stringify(value);
    return s === undefined ? String(value) : s;
  } catch {
    return String(value);
  }
}

/** What a failed file-system call's code means, in the words a message should use. */
const FS_REASONS: Record<string, string> = {
  ENOENT: 'no such file or folder',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'it is a folder, not a file',
  EEXIST: 'it already exists',
  EACCES: 'permission denied',
  EPERM: 'not permitted here',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large for the file system',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
  ENAMETOOLONG: 'name too long',
  ELOOP: 'too many symbolic links',
  EIO: 'input/output error',
};

/** The reason of a failed file-system call as one phrase: "read-only file system (EROFS)". */
export function fsReason(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code in FS_REASONS) return `${FS_REASONS[code]} (${code})`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * A failed file-system call as a one-line E_FILE error: `Cannot <action> <file>: <reason>`, so the
 * user sees the path and the problem instead of a stack trace. Yolo5Errors pass through unchanged.
 */
export function fileError(action: string, file: string, err: unknown): Yolo5Error {
  if (err instanceof Yolo5Error) return err;
  return new Yolo5Error('E_FILE', `Cannot ${action} ${file}: ${fsReason(err)}`, {
    file,
    cause: err,
  });
}

/**
 * The rest of a "not found" message for weights or a data yaml: yolo5 downloads nothing (no
 * network is assumed), so say where such files come from and what is built in instead.
 */
export function notDownloadedHint(kind: 'weights' | 'data'): string {
  if (kind === 'weights') {
    return (
      'yolo5 downloads nothing: the Python YOLOv5 checkpoints (yolov5n.pt, yolov5s.pt … yolov5x6.pt) ' +
      'are assets of the YOLOv5 v7.0 release (https://github.com/ultralytics/yolov5/releases/tag/v7.0); ' +
      'download one and pass its path. Built in: models/yolov5n-shapes.pt in the yolo5 package ' +
      '(yolov5n pretrained on synthetic shapes, what `yolo5 train` fine-tunes without --data), ' +
      "or --weights '' --cfg yolov5n.yaml for an untrained model"
    );
  }
  return (
    'yolo5 downloads nothing and bundles no data yaml: coco128.yaml and the other data yamls are in ' +
    'the data/ folder of the YOLOv5 repository (https://github.com/ultralytics/yolov5, v7.0), and ' +
    'their images are downloaded separately; or write a yaml with path, train, val and names. ' +
    'Built in: leave out --data to train on the synthetic shapes set (generated on first use)'
  );
}
