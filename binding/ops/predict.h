// Images in, detections out: decode, letterbox, batch, forward, NMS, boxes back in source pixels.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "data/image.h"
#include "loss/loss.h"
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

struct PredictOptions {
  int imgsz = 640;
  // Val: every image letterboxed to this (height, width) without upscaling, after the long side
  // was resized to imgsz. Detect (unset): each image letterboxed to imgsz, padded to the stride.
  std::optional<std::pair<int, int>> shape;
  NmsOptions nms;
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

std::vector<PredictResult> predict(YoloModelImpl& model, const std::vector<ImageInput>& inputs,
                                   const PredictOptions& opts, PredictTiming& timing);

// Decodes any input kind.
Image load_input(const ImageInput& input);

}  // namespace yolo5
