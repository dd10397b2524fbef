// Non-maximum suppression as the reference applies it to decoded YOLOv5 outputs.
#pragma once
#include <vector>

namespace yolo5 {

struct NmsOptions {
  double conf = 0.25;            // objectness (and obj·cls) threshold
  double iou = 0.45;             // suppress overlaps above this IoU
  bool multi_label = false;      // keep every class above conf per box (val), else the best one
  bool agnostic = false;         // one NMS over all classes
  std::vector<int64_t> classes;  // keep only these classes (empty: all)
  int64_t max_det = 300;
  int64_t max_nms = 30000;  // candidates into NMS, best first
};

// Greedy NMS over xyxy boxes (n, 4) with scores (n): indices kept, best score first.
torch::Tensor nms_indices(const torch::Tensor& boxes, const torch::Tensor& scores, double iou);

// prediction (bs, N, 5 + nc) decoded in input pixels → per image (n, 6): x1, y1, x2, y2, conf, cls.
std::vector<torch::Tensor> non_max_suppression(const torch::Tensor& prediction,
                                               const NmsOptions& opts);

torch::Tensor xywh2xyxy(const torch::Tensor& x);

}  // namespace yolo5
