// The learning-rate schedule as the reference applies it: a per-epoch factor (linear or cosine
// from 1 down to lrf), and a warmup over the first iterations that ramps each group's learning
// rate and momentum and the number of batches accumulated per optimizer step.
#pragma once
#include <cstdint>

namespace yolo5 {

struct TrainHyp {
  double lr0 = 0.01, lrf = 0.01, momentum = 0.937, weight_decay = 5e-4;
  double warmup_epochs = 3, warmup_momentum = 0.8, warmup_bias_lr = 0.1;
};

// Linear interpolation of y between (x0, y0) and (x1, y1), held flat outside [x0, x1].
double interp(double x, double x0, double x1, double y0, double y1);

// One group's learning rate and momentum at an iteration.
struct GroupSetting {
  double lr, momentum;
};

class Schedule {
 public:
  // `nbs` is the nominal batch size the reference tunes for; `batches` the batches per epoch.
  Schedule(const TrainHyp& hyp, int64_t epochs, bool cos_lr, int nbs, int batch, int64_t batches);

  // Batches accumulated per optimizer step after warmup: nbs / batch, rounded, at least 1.
  int accumulate() const { return accumulate_; }
  // The weight decay scaled to the effective batch (batch · accumulate against nbs).
  double weight_decay() const;
  // The factor on lr0 at an epoch: linear (1 → lrf) or, with cos_lr, a half cosine.
  double lr_factor(double epoch) const;
  double epoch_lr(int64_t epoch) const { return hyp_.lr0 * lr_factor(static_cast<double>(epoch)); }
  // Warmup iterations: warmup_epochs of batches, at least 100.
  double warmup_iterations() const { return warmup_iterations_; }
  bool warming_up(int64_t ni) const { return static_cast<double>(ni) <= warmup_iterations_; }
  // During warmup: the accumulation ramps from 1 to nbs / batch.
  int warmup_accumulate(int64_t ni) const;
  // During warmup: group 0 (biases) falls from warmup_bias_lr, the others rise from 0, to the
  // epoch's learning rate; momentum rises from warmup_momentum.
  GroupSetting warmup(size_t group, int64_t ni, double epoch_lr) const;
  double momentum() const { return hyp_.momentum; }

 private:
  TrainHyp hyp_;
  double epochs_;
  bool cos_lr_;
  int nbs_, batch_;
  int accumulate_;
  double warmup_iterations_;
};

}  // namespace yolo5
