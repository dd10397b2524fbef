#include "loss/loss.h"

#include <cmath>

namespace yolo5 {

namespace {

struct LevelTargets {
  torch::Tensor b, a, gj, gi;  // image, anchor, cell row, cell column (clamped)
  torch::Tensor tbox;          // (n, 4): xy offset within the cell, wh in grid units
  torch::Tensor anchors;       // (n, 2)
  torch::Tensor cls;           // (n)
};

// Matches every target to the anchors whose shape ratio is within anchor_t, in its own cell and
// the up to two neighbouring cells nearest its centre.
std::vector<LevelTargets> build_targets(const std::vector<torch::Tensor>& raw,
                                        const torch::Tensor& targets, const DetectImpl& det,
                                        double anchor_t) {
  const auto opts = targets.options();
  const int64_t na = det.na, nt = targets.size(0);
  auto ai = torch::arange(na, opts).view({na, 1}).repeat({1, nt});
  // (na, nt, 7): image, class, x, y, w, h, anchor index
  auto all = torch::cat({targets.repeat({na, 1, 1}), ai.unsqueeze(2)}, 2);
  const double g = 0.5;
  auto off =
      torch::tensor({0.f, 0.f, 1.f, 0.f, 0.f, 1.f, -1.f, 0.f, 0.f, -1.f}, opts).view({5, 2}) * g;

  std::vector<LevelTargets> out;
  for (int64_t i = 0; i < det.nl; ++i) {
    auto anchors = det.anchors[i].to(opts);
    const int64_t ny = raw[i].size(2), nx = raw[i].size(3);
    auto gain = torch::ones({7}, opts);
    gain.slice(0, 2, 6).copy_(torch::tensor({static_cast<float>(nx), static_cast<float>(ny),
                                             static_cast<float>(nx), static_cast<float>(ny)},
                                            opts));
    auto t = all * gain;
    torch::Tensor offsets;
    if (nt > 0) {
      auto r = t.slice(2, 4, 6) / anchors.unsqueeze(1);
      auto keep = std::get<0>(torch::max(r, 1.0 / r).max(2)) < anchor_t;
      t = t.index({keep});
      auto gxy = t.slice(1, 2, 4);
      auto gxi = gain.slice(0, 2, 4) - gxy;
      auto near_lo = ((gxy.fmod(1.0) < g) & (gxy > 1)).t();  // left, up
      auto near_hi = ((gxi.fmod(1.0) < g) & (gxi > 1)).t();  // right, down
      auto pick = torch::stack(
          {torch::ones_like(near_lo[0]), near_lo[0], near_lo[1], near_hi[0], near_hi[1]});
      t = t.repeat({5, 1, 1}).index({pick});
      offsets = (torch::zeros_like(gxy).unsqueeze(0) + off.unsqueeze(1)).index({pick});
    } else {
      t = all[0];
      offsets = torch::zeros({0, 2}, opts);
    }
    auto bc = t.slice(1, 0, 2), gxy = t.slice(1, 2, 4), gwh = t.slice(1, 4, 6);
    auto a = t.select(1, 6).to(torch::kLong);
    auto gij = (gxy - offsets).to(torch::kLong);
    LevelTargets lt;
    lt.b = bc.select(1, 0).to(torch::kLong);
    lt.cls = bc.select(1, 1).to(torch::kLong);
    lt.a = a;
    // The box target uses the cell before clamping; the prediction index is clamped to the grid.
    lt.tbox = torch::cat({gxy - gij, gwh}, 1);
    lt.gi = gij.select(1, 0).clamp(0, nx - 1);
    lt.gj = gij.select(1, 1).clamp(0, ny - 1);
    lt.anchors = anchors.index({a});
    out.push_back(std::move(lt));
  }
  return out;
}

torch::Tensor bce(const torch::Tensor& logits, const torch::Tensor& target, double pos_weight,
                  double gamma) {
  auto pw = torch::full({1}, pos_weight, logits.options());
  if (gamma <= 0) {
    return torch::binary_cross_entropy_with_logits(logits, target, {}, pw, at::Reduction::Mean);
  }
  // Focal loss (alpha 0.25): down-weights easy examples by (1 - p_t)^gamma.
  auto loss = torch::binary_cross_entropy_with_logits(logits, target, {}, pw, at::Reduction::None);
  auto p = logits.sigmoid();
  auto p_t = target * p + (1 - target) * (1 - p);
  const double alpha = 0.25;
  auto alpha_factor = target * alpha + (1 - target) * (1 - alpha);
  return (loss * alpha_factor * (1.0 - p_t).pow(gamma)).mean();
}

}  // namespace

torch::Tensor ciou(const torch::Tensor& box1, const torch::Tensor& box2, double eps) {
  auto x1 = box1.select(-1, 0), y1 = box1.select(-1, 1), w1 = box1.select(-1, 2),
       h1 = box1.select(-1, 3);
  auto x2 = box2.select(-1, 0), y2 = box2.select(-1, 1), w2 = box2.select(-1, 2),
       h2 = box2.select(-1, 3);
  auto b1x1 = x1 - w1 / 2, b1x2 = x1 + w1 / 2, b1y1 = y1 - h1 / 2, b1y2 = y1 + h1 / 2;
  auto b2x1 = x2 - w2 / 2, b2x2 = x2 + w2 / 2, b2y1 = y2 - h2 / 2, b2y2 = y2 + h2 / 2;
  auto inter = (torch::min(b1x2, b2x2) - torch::max(b1x1, b2x1)).clamp_min(0) *
               (torch::min(b1y2, b2y2) - torch::max(b1y1, b2y1)).clamp_min(0);
  auto uni = w1 * h1 + w2 * h2 - inter + eps;
  auto iou = inter / uni;
  auto cw = torch::max(b1x2, b2x2) - torch::min(b1x1, b2x1);  // enclosing box
  auto ch = torch::max(b1y2, b2y2) - torch::min(b1y1, b2y1);
  auto c2 = cw.pow(2) + ch.pow(2) + eps;
  auto rho2 = ((b2x1 + b2x2 - b1x1 - b1x2).pow(2) + (b2y1 + b2y2 - b1y1 - b1y2).pow(2)) / 4;
  auto v = (4 / (M_PI * M_PI)) * (torch::atan(w2 / h2) - torch::atan(w1 / h1)).pow(2);
  torch::Tensor alpha;
  {
    torch::NoGradGuard no_grad;
    alpha = v / (v - iou + (1 + eps));
  }
  return iou - (rho2 / c2 + v * alpha);
}

LossOutput compute_loss(const std::vector<torch::Tensor>& raw, const torch::Tensor& targets_in,
                        const DetectImpl& det, const LossHyp& hyp) {
  TORCH_CHECK(static_cast<int64_t>(raw.size()) == det.nl, "loss: expected ", det.nl,
              " levels, got ", raw.size());
  TORCH_CHECK(targets_in.dim() == 2 && targets_in.size(1) == 6, "targets should be (n, 6), got ",
              targets_in.sizes());
  const auto opts = raw[0].options();
  auto targets = targets_in.to(opts);
  const double cp = 1.0 - 0.5 * hyp.label_smoothing, cn = 0.5 * hyp.label_smoothing;
  static const std::vector<double> balance3 = {4.0, 1.0, 0.4};
  static const std::vector<double> balance5 = {4.0, 1.0, 0.25, 0.06, 0.02};
  const auto& balance = det.nl == 3 ? balance3 : balance5;

  auto lbox = torch::zeros({1}, opts), lobj = torch::zeros({1}, opts),
       lcls = torch::zeros({1}, opts);
  auto tgt = build_targets(raw, targets, det, hyp.anchor_t);
  for (int64_t i = 0; i < det.nl; ++i) {
    const auto& pi = raw[i];
    const auto& t = tgt[i];
    auto tobj = torch::zeros(pi.sizes().slice(0, 4), opts);
    const int64_t n = t.b.size(0);
    if (n > 0) {
      auto ps = pi.index({t.b, t.a, t.gj, t.gi});  // (n, no)
      auto pxy = ps.slice(1, 0, 2).sigmoid() * 2 - 0.5;
      auto pwh = (ps.slice(1, 2, 4).sigmoid() * 2).pow(2) * t.anchors;
      auto iou = ciou(torch::cat({pxy, pwh}, 1), t.tbox);
      lbox = lbox + (1.0 - iou).mean();
      // Objectness target: the box's IoU, detached and clamped at 0 (gr = 1).
      tobj.index_put_({t.b, t.a, t.gj, t.gi}, iou.detach().clamp_min(0).to(tobj.dtype()));
      if (det.nc > 1) {
        auto pcls = ps.slice(1, 5);
        auto tc = torch::full_like(pcls, cn);
        tc.index_put_({torch::arange(n, t.cls.options()), t.cls}, cp);
        lcls = lcls + bce(pcls, tc, hyp.cls_pw, hyp.fl_gamma);
      }
    }
    lobj = lobj + bce(pi.select(4, 4), tobj, hyp.obj_pw, hyp.fl_gamma) * balance[i];
  }
  lbox = lbox * hyp.box;
  lobj = lobj * hyp.obj;
  lcls = lcls * hyp.cls;
  const auto bs = raw[0].size(0);
  LossOutput out;
  out.total = (lbox + lobj + lcls).sum() * static_cast<double>(bs);
  out.parts = torch::cat({lbox, lobj, lcls}).detach();
  return out;
}

}  // namespace yolo5
