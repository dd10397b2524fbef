#include "train/scaler.h"

#include <cmath>

namespace yolo5 {

GradScaler::GradScaler(const GradScalerOptions& o, const c10::Device& device) : opts_(o) {
  TORCH_CHECK(o.init_scale > 0 && o.growth > 1 && o.backoff > 0 && o.backoff < 1 && o.interval > 0,
              "gradient scaler: bad options");
  auto f = torch::TensorOptions().dtype(torch::kFloat).device(device);
  scale_ = torch::full({1}, o.init_scale, f);
  growth_tracker_ = torch::zeros({1}, f.dtype(torch::kInt));
  found_inf_ = torch::zeros({1}, f);
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const {
  return loss * scale_.to(loss.scalar_type());
}

bool GradScaler::unscale(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return true;
  found_inf_.zero_();
  auto inv = scale_.reciprocal();
  if (scale_.is_cuda()) {
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, inv);
    return found_inf_.item<float>() == 0;
  }
  bool finite = true;
  for (auto& g : grads) {
    g.mul_(inv);
    if (finite && !torch::isfinite(g).all().item<bool>()) finite = false;
  }
  if (!finite) found_inf_.fill_(1);
  return finite;
}

void GradScaler::update(bool found_inf) {
  if (scale_.is_cuda()) {
    found_inf_.fill_(found_inf ? 1 : 0);
    at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, opts_.growth, opts_.backoff,
                           opts_.interval);
    return;
  }
  // The same rule as _amp_update_scale_, on host values.
  double s = scale_.item<double>();
  int64_t tracker = growth_tracker_.item<int>();
  if (found_inf) {
    s *= opts_.backoff;
    tracker = 0;
  } else if (++tracker == opts_.interval) {
    const double grown = static_cast<float>(s * opts_.growth);
    if (std::isfinite(grown)) s = grown;
    tracker = 0;
  }
  scale_.fill_(s);
  growth_tracker_.fill_(static_cast<int>(tracker));
}

double GradScaler::scale_value() const { return scale_.item<double>(); }
int64_t GradScaler::growth_tracker() const { return growth_tracker_.item<int>(); }

}  // namespace yolo5
