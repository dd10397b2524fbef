// Images in, detections out: decode, letterbox, batch, forward, NMS, boxes back in source pixels.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "data/image.h"
#include "loss/loss.h"
#include "model/amp.h"
#include "model/yolo.h"
#include "ops/nms.h"

namespace yolo5 {

struct ImageInput {
  enum class Kind { Path, Encoded, Raw } kind = Kind::Path;
  std::string path;            // Path
  std::vector<uint8_t> bytes;  // Encoded (a copy) or Raw RGB
  int width = 0, height = 0;   // Raw
  std::string label() const;   // for messages
};

// One test-time augmentation pass: the letterboxed batch resized by `scale` (padded to the grid)
// and, with `flip`, mirrored left-right first.
struct TtaPass {
  double scale = 1;
  bool flip = false;
};

// The reference's passes: scale 1; 0.83 flipped; 0.67.
std::vector<TtaPass> default_tta();

struct PredictOptions {
  int imgsz = 640;
  // Test-time augmentation (empty: one plain pass). Not with `loss`.
  std::vector<TtaPass> tta;
  // Val: every image letterboxed to this (height, width) without upscaling, after the long side
  // was resized to imgsz. Detect (unset): each image letterboxed to imgsz, padded to the stride.
  std::optional<std::pair<int, int>> shape;
  NmsOptions nms;
  // Autocast around the forward passes (boxes are decoded from fp32 predictions).
  AmpMode amp = AmpMode::Off;
  bool keep_images = false;  // return the decoded source images (for drawing and crops)
  // Val loss: when set, `labels` (one list per input: class, cx, cy, w, h normalised to the source)
  // are mapped into each batch and the loss of the raw outputs is summed per batch.
  std::optional<LossHyp> loss;
  std::vector<std::vector<std::array<float, 5>>> labels;
};

struct PredictResult {
  bool ok = false;
  std::string error;
  int width = 0, height = 0;  // source image
  torch::Tensor detections;   // (n, 6) x1 y1 x2 y2 conf cls in source pixels
  Image image;                // source, when keep_images
};

struct PredictTiming {
  double pre_ms = 0, inference_ms = 0, nms_ms = 0;
  int images = 0;
  double loss[3] = {0, 0, 0};  // box, obj, cls summed over batches (with PredictOptions::loss)
  int loss_batches = 0;
};

// Several models form an ensemble: each one's decoded output on the same batch (with its own TTA
// passes), rows concatenated, one NMS. They must share nc and a device; the letterbox pads to the
// largest stride among them. `loss` needs exactly one model.
std::vector<PredictResult> predict(const std::vector<YoloModelImpl*>& models,
                                   const std::vector<ImageInput>& inputs,
                                   const PredictOptions& opts, PredictTiming& timing);

// A (bs, c, h, w) batch resized by `scale` (bilinear, half-pixel centres) to (int(h·s), int(w·s)),
// then padded right and bottom with 0.447 up to ceil(h·s/gs)·gs × ceil(w·s/gs)·gs. Scale 1: as is.
torch::Tensor scale_batch(const torch::Tensor& x, double scale, int64_t gs);

// The model's decoded eval output (bs, rows, 5 + nc) over the passes, each mapped back into `x`'s
// pixels (÷ scale, x mirrored for flipped passes) and concatenated. With two or more passes the
// first drops its largest-stride level's rows and the last its smallest-stride level's rows.
torch::Tensor augmented_forward(YoloModelImpl& model, const torch::Tensor& x,
                                const std::vector<TtaPass>& passes);

// Decodes any input kind.
Image load_input(const ImageInput& input);

}  // namespace yolo5
