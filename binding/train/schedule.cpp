#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace yolo5 {

double interp(double x, double x0, double x1, double y0, double y1) {
  if (x <= x0) return y0;
  if (x >= x1) return y1;
  return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
}

Schedule::Schedule(const TrainHyp& hyp, int64_t epochs, bool cos_lr, int nbs, int batch,
                   int64_t batches)
    : hyp_(hyp),
      epochs_(static_cast<double>(epochs)),
      cos_lr_(cos_lr),
      nbs_(nbs),
      batch_(batch),
      accumulate_(std::max(static_cast<int>(std::nearbyint(static_cast<double>(nbs) / batch)), 1)),
      warmup_iterations_(std::max(std::nearbyint(hyp.warmup_epochs * batches), 100.0)) {}

double Schedule::weight_decay() const { return hyp_.weight_decay * batch_ * accumulate_ / nbs_; }

double Schedule::lr_factor(double e) const {
  const double E = epochs_, lrf = hyp_.lrf;
  if (cos_lr_) return ((1 - std::cos(e * M_PI / E)) / 2) * (lrf - 1) + 1;
  return (1 - e / E) * (1.0 - lrf) + lrf;
}

int Schedule::warmup_accumulate(int64_t ni) const {
  return std::max(1, static_cast<int>(std::nearbyint(interp(ni, 0, warmup_iterations_, 1,
                                                            static_cast<double>(nbs_) / batch_))));
}

GroupSetting Schedule::warmup(size_t group, int64_t ni, double epoch_lr) const {
  const double nw = warmup_iterations_;
  return {interp(ni, 0, nw, group == 0 ? hyp_.warmup_bias_lr : 0.0, epoch_lr),
          interp(ni, 0, nw, hyp_.warmup_momentum, hyp_.momentum)};
}

}  // namespace yolo5
