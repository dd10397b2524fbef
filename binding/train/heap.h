#pragma once
// glibc malloc for training steps. Every step allocates and frees the same activation and
// gradient buffers (tens of MB at 256 px, hundreds at 640); with glibc's defaults the larger ones
// come from fresh mmap()s or a trimmed heap top, so every step pays page faults (the kernel
// zeroing each page) for memory it had a moment ago: measured 6–10% of a yolov5n step here
// (scripts/bench, interleaved rounds). While a trainer exists, buffers up to 32 MB (glibc's
// largest mmap threshold) come from the heap and freed memory stays mapped; each epoch's end
// returns it to the system (malloc_trim). YOLO5_MALLOC_TUNING=0 leaves malloc as it is. This is
// process-wide: a Node process that trains keeps glibc's static threshold afterwards.
namespace yolo5 {

// Once per process, on the first trainer (no-op without glibc or with YOLO5_MALLOC_TUNING=0).
void tune_heap_for_training();
// Hands freed heap memory back to the system (after an epoch); no-op where tuning is off.
void release_free_heap();

}  // namespace yolo5
