// The YOLOv5 loss: targets matched to anchors and neighbouring cells, CIoU box loss, objectness
// against the (clamped) IoU, BCE classes with label smoothing, optional focal loss.
#pragma once
#include <vector>

#include "model/yolo.h"

namespace yolo5 {

// Gains already scaled for levels, classes and image size (as training scales them).
struct LossHyp {
  double box = 0.05;
  double cls = 0.5;
  double obj = 1.0;
  double cls_pw = 1.0;
  double obj_pw = 1.0;
  double anchor_t = 4.0;
  double fl_gamma = 0.0;
  double label_smoothing = 0.0;
};

struct LossOutput {
  torch::Tensor total;  // (lbox + lobj + lcls) · batch size, differentiable
  torch::Tensor parts;  // (3): lbox, lobj, lcls, detached
};

// CIoU of boxes given as (cx, cy, w, h) rows; the trade-off weight alpha carries no gradient.
torch::Tensor ciou(const torch::Tensor& box1, const torch::Tensor& box2, double eps = 1e-7);

// raw: Detect's training outputs (bs, na, ny, nx, no) per level; targets (n, 6): image, class,
// cx, cy, w, h normalised.
LossOutput compute_loss(const std::vector<torch::Tensor>& raw, const torch::Tensor& targets,
                        const DetectImpl& detect, const LossHyp& hyp);

}  // namespace yolo5
