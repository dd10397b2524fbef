// Dynamic loss scaling for fp16 training (PyTorch's GradScaler semantics and defaults): the loss
// is multiplied by the scale before backward; before the optimizer step the gradients are divided
// by it and checked; a step whose gradients hold an inf or NaN is skipped and the scale halves,
// and after `interval` good steps in a row the scale doubles.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace yolo5 {

struct GradScalerOptions {
  double init_scale = 65536.0;  // 2^16
  double growth = 2.0;
  double backoff = 0.5;
  int64_t interval = 2000;
};

class GradScaler {
 public:
  GradScaler(const GradScalerOptions& o, const c10::Device& device);

  torch::Tensor scale(const torch::Tensor& loss) const;
  // Divides every defined gradient by the scale; false when any of them holds an inf or NaN.
  // CUDA gradients go through ATen's fused _amp_foreach_non_finite_check_and_unscale_ (one
  // kernel per dtype); CPU ones through plain tensor ops (LibTorch 1.13 has no CPU kernel).
  bool unscale(const std::vector<torch::Tensor>& params);
  // After each optimizer step (taken or skipped): back off on inf/NaN, grow after `interval`.
  void update(bool found_inf);

  double scale_value() const;
  int64_t growth_tracker() const;

 private:
  GradScalerOptions opts_;
  torch::Tensor scale_;           // (1,) float32 on the device
  torch::Tensor growth_tracker_;  // (1,) int32 on the device
  torch::Tensor found_inf_;       // (1,) float32 on the device
};

}  // namespace yolo5
