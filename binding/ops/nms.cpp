#include "ops/nms.h"

#include <algorithm>
#include <numeric>

namespace yolo5 {

torch::Tensor xywh2xyxy(const torch::Tensor& x) {
  auto xy = x.slice(-1, 0, 2), half = x.slice(-1, 2, 4) / 2;
  return torch::cat({xy - half, xy + half}, -1);
}

torch::Tensor nms_indices(const torch::Tensor& boxes_in, const torch::Tensor& scores_in,
                          double iou) {
  TORCH_CHECK(boxes_in.dim() == 2 && boxes_in.size(1) == 4, "boxes should be (n, 4), got ",
              boxes_in.sizes());
  TORCH_CHECK(scores_in.dim() == 1 && scores_in.size(0) == boxes_in.size(0),
              "scores should be (n), got ", scores_in.sizes());
  auto boxes = boxes_in.to(torch::kCPU, torch::kFloat).contiguous();
  auto scores = scores_in.to(torch::kCPU, torch::kFloat).contiguous();
  const int64_t n = boxes.size(0);
  const float* b = boxes.data_ptr<float>();
  const float* s = scores.data_ptr<float>();
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return s[i] > s[j]; });
  std::vector<float> area(n);
  for (int64_t i = 0; i < n; ++i)
    area[i] = (b[i * 4 + 2] - b[i * 4]) * (b[i * 4 + 3] - b[i * 4 + 1]);
  std::vector<char> removed(n, 0);
  std::vector<int64_t> keep;
  for (int64_t oi = 0; oi < n; ++oi) {
    int64_t i = order[oi];
    if (removed[i]) continue;
    keep.push_back(i);
    const float x1 = b[i * 4], y1 = b[i * 4 + 1], x2 = b[i * 4 + 2], y2 = b[i * 4 + 3];
    for (int64_t oj = oi + 1; oj < n; ++oj) {
      int64_t j = order[oj];
      if (removed[j]) continue;
      float w = std::min(x2, b[j * 4 + 2]) - std::max(x1, b[j * 4]);
      float h = std::min(y2, b[j * 4 + 3]) - std::max(y1, b[j * 4 + 1]);
      if (w <= 0 || h <= 0) continue;
      float inter = w * h;
      if (inter / (area[i] + area[j] - inter) > iou) removed[j] = 1;
    }
  }
  return torch::tensor(keep, torch::kLong);
}

std::vector<torch::Tensor> non_max_suppression(const torch::Tensor& prediction,
                                               const NmsOptions& opts) {
  TORCH_CHECK(prediction.dim() == 3 && prediction.size(2) > 5,
              "prediction should be (batch, n, 5 + nc), got ", prediction.sizes());
  std::vector<torch::Tensor> out;
  auto pred = prediction.to(torch::kCPU, torch::kFloat);
  for (int64_t xi = 0; xi < pred.size(0); ++xi) {
    auto x = pred[xi];
    x = x.index({x.select(1, 4) > opts.conf});
    if (x.size(0) == 0) {
      out.push_back(torch::zeros({0, 6}));
      continue;
    }
    x = x.clone();
    auto cls_scores = x.slice(1, 5) * x.slice(1, 4, 5);  // conf = obj · cls
    auto box = xywh2xyxy(x.slice(1, 0, 4));
    torch::Tensor det;
    if (opts.multi_label) {
      auto ij = (cls_scores > opts.conf).nonzero();  // row-major: by box, then class
      auto i = ij.select(1, 0), j = ij.select(1, 1);
      det = torch::cat(
          {box.index({i}), cls_scores.index({i, j}).unsqueeze(1), j.unsqueeze(1).to(torch::kFloat)},
          1);
    } else {
      auto best = cls_scores.max(1, true);
      auto conf = std::get<0>(best), j = std::get<1>(best);
      det = torch::cat({box, conf, j.to(torch::kFloat)}, 1).index({conf.view(-1) > opts.conf});
    }
    if (!opts.classes.empty() && det.size(0) > 0) {
      auto wanted = torch::tensor(opts.classes, torch::kFloat);
      det = det.index({(det.slice(1, 5, 6) == wanted).any(1)});
    }
    if (det.size(0) == 0) {
      out.push_back(torch::zeros({0, 6}));
      continue;
    }
    auto order = det.select(1, 4).argsort(0, true);
    if (order.size(0) > opts.max_nms) order = order.slice(0, 0, opts.max_nms);
    det = det.index({order});
    torch::Tensor keep;
    if (opts.agnostic) {
      keep = nms_indices(det.slice(1, 0, 4), det.select(1, 4), opts.iou);
    } else {
      // Per class: the same result as one NMS over class-offset boxes, without comparing boxes of
      // different classes (thousands of low-confidence candidates in val).
      auto cls = det.select(1, 5).to(torch::kLong);
      std::vector<torch::Tensor> kept;
      for (auto c : std::get<0>(at::_unique(cls)).unbind()) {
        auto idx = (cls == c).nonzero().view(-1);
        kept.push_back(idx.index(
            {nms_indices(det.index({idx}).slice(1, 0, 4), det.index({idx, 4}), opts.iou)}));
      }
      keep = torch::cat(kept);
      // Best score first across classes; det is already sorted, so index order is score order.
      keep = std::get<0>(keep.sort());
    }
    if (keep.size(0) > opts.max_det) keep = keep.slice(0, 0, opts.max_det);
    out.push_back(det.index({keep}));
  }
  return out;
}

}  // namespace yolo5
