#include "train/ema.h"

#include <cmath>

namespace yolo5 {

void ModelEma::update(YoloModelImpl& model) {
  torch::NoGradGuard no_grad;
  const int64_t updates = updates_.fetch_add(1) + 1;
  const double d = 0.9999 * (1 - std::exp(-static_cast<double>(updates) / 2000.0));
  auto src = model.state();
  auto dst = ema_->state();
  auto kinds = model.state_kinds();
  for (size_t i = 0; i < dst.size(); ++i) {
    auto& v = dst[i].second;
    if (!v.is_floating_point()) continue;
    // A frozen parameter never changes, so its average is itself: skipping it keeps the EMA copy
    // bit-identical (v·d + (1 − d)·v can round) and saves the work. Buffers always average.
    if (kinds[i].second && !src[i].second.requires_grad()) continue;
    v.mul_(d).add_(src[i].second.detach(), 1 - d);
  }
}

}  // namespace yolo5
