// One training epoch at a time, natively: batches from the loader → forward → loss → backward →
// (every `accumulate` batches) clip, optimizer step, EMA. Warmup and the LR schedule as the
// reference applies them.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "loss/loss.h"
#include "model/yolo.h"

namespace yolo5 {

struct TrainHyp {
  double lr0 = 0.01, lrf = 0.01, momentum = 0.937, weight_decay = 5e-4;
  double warmup_epochs = 3, warmup_momentum = 0.8, warmup_bias_lr = 0.1;
};

struct TrainerOptions {
  int64_t epochs = 100;
  int batch = 16;
  int nbs = 64;                   // nominal batch size
  std::string optimizer = "SGD";  // SGD (nesterov), Adam, AdamW
  bool cos_lr = false;
  TrainHyp hyp;
  LossHyp loss;
  double max_grad_norm = 10.0;
  bool multi_scale = false;  // each batch resized to a random 0.5–1.5× imgsz (stride multiple)
  int imgsz = 640;
  int stride = 32;
  uint64_t seed = 0;
  bool freeze_bn =
      false;  // BatchNorm layers whose weights are frozen keep their running statistics
  // Convolution weights and batches in NHWC memory order (oneDNN's native layout on CPU: no
  // reorders around each convolution). Numerically the same model; state read-outs are NCHW.
  bool channels_last = false;
};

class ModelEma {
 public:
  ModelEma(std::shared_ptr<YoloModelImpl> ema, int64_t updates)
      : ema_(std::move(ema)), updates_(updates) {}
  void update(YoloModelImpl& model);
  int64_t updates() const { return updates_; }
  void set_updates(int64_t u) { updates_ = u; }

 private:
  std::shared_ptr<YoloModelImpl> ema_;
  int64_t updates_ = 0;
};

// Where an epoch's wall time went, in seconds, cumulative: waiting for the loader's batch, forward
// pass + loss, backward pass, optimizer step (clipping, step, EMA). On CUDA these are enqueue times
// unless something synchronises.
struct StepTimes {
  double data = 0, forward = 0, backward = 0, optimizer = 0;
};

struct BatchProgress {
  int64_t epoch = 0, batch = 0, batches = 0;
  double lbox = 0, lobj = 0, lcls = 0;  // running means this epoch
  int64_t instances = 0;
  int64_t size = 0;
  double seconds = 0;
  StepTimes times;  // cumulative this epoch
};

struct EpochStats {
  double lbox = 0, lobj = 0, lcls = 0;
  std::vector<double>
      lrs;  // per group at the epoch's end: biases, weights (decay), BatchNorm weights
  int64_t batches = 0, images = 0;
  double seconds = 0;
  StepTimes times;
  bool aborted = false;
  bool non_finite = false;  // a loss was NaN or inf: the epoch stopped there
  std::vector<std::string> warnings;
};

class Trainer {
 public:
  Trainer(std::shared_ptr<YoloModelImpl> model, std::shared_ptr<ModelEma> ema,
          std::unique_ptr<Loader> loader, TrainerOptions opts);

  EpochStats run_epoch(int64_t epoch, bool mosaic,
                       const std::function<void(const BatchProgress&)>& on_batch,
                       const std::atomic<bool>& abort);

  int64_t batches_per_epoch() const { return loader_->batches_per_epoch(); }
  Loader& loader() { return *loader_; }
  ModelEma* ema() { return ema_.get(); }
  int accumulate() const { return accumulate_; }
  double weight_decay() const { return weight_decay_; }

  // Optimizer state for checkpoints: per parameter name, the buffers (momentum_buffer, exp_avg, …).
  std::vector<std::tuple<std::string, std::string, torch::Tensor>> optimizer_buffers() const;
  void load_optimizer_buffers(
      const std::vector<std::tuple<std::string, std::string, torch::Tensor>>& buffers);
  int64_t last_opt_step() const { return last_opt_step_; }
  void set_last_opt_step(int64_t v) { last_opt_step_ = v; }

  double lr_factor(double epoch) const;

 private:
  void set_train_mode();

  std::shared_ptr<YoloModelImpl> model_;
  std::shared_ptr<ModelEma> ema_;
  std::unique_ptr<Loader> loader_;
  TrainerOptions opts_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<std::vector<std::string>> group_names_;  // parameter names per group
  int accumulate_ = 1;
  double weight_decay_ = 0;
  int64_t last_opt_step_ = -1;
};

}  // namespace yolo5
