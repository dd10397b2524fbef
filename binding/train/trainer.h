// One training epoch at a time, natively: batches from the loader → forward and loss → backward →
// (every `accumulate` batches) clip, optimizer step, EMA. Warmup and the LR schedule as the
// reference applies them (train/schedule.h); the optimizer in train/optimizer.h, the EMA in
// train/ema.h.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "loss/loss.h"
#include "model/amp.h"
#include "model/yolo.h"
#include "train/dist.h"
#include "train/ema.h"
#include "train/optimizer.h"
#include "train/profile.h"
#include "train/scaler.h"
#include "train/schedule.h"

namespace yolo5 {

// Every field is set by the caller (addon/convert.cpp from the options TypeScript resolved): no
// defaults here, so that the defaults live in one place (lib/).
struct TrainerOptions {
  int64_t epochs = 0;
  int batch = 0;
  int nbs = 0;  // nominal batch size
  OptimizerKind optimizer = OptimizerKind::SGD;
  bool cos_lr = false;
  TrainHyp hyp;
  LossHyp loss;
  bool multi_scale = false;  // each batch resized to a random 0.5–1.5× imgsz (stride multiple)
  int imgsz = 0;
  int stride = 0;
  uint64_t seed = 0;
  // BatchNorm layers whose weights are frozen keep their running statistics.
  bool freeze_bn = false;
  // Convolution weights and batches in NHWC memory order (oneDNN's native layout on CPU: no
  // reorders around each convolution). Numerically the same model; state read-outs are NCHW.
  bool channels_last = false;
  // Data-parallel training in this group (null: one process). `batch` stays the global batch
  // (the schedule's); the loader's is per rank.
  std::shared_ptr<DistGroup> dist;
  bool sync_bn = false;  // BatchNorm statistics over every rank's batch
  // Test hook: the first step's averaged gradients are written to this file (empty: never).
  std::string test_gradients;
  // Autocast around the forward pass (the loss runs on fp32 predictions; weights stay fp32).
  AmpMode amp = AmpMode::Off;
  // > 0: dynamic loss scaling from this scale (fp16); 0: none.
  double loss_scale = 0;
};

// The reference clips the gradient norm at 10 before every optimizer step.
constexpr double kMaxGradNorm = 10.0;

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
  // Per group at the epoch's end: biases, weights (decay), BatchNorm weights.
  std::vector<double> lrs;
  int64_t batches = 0, images = 0;
  double seconds = 0;
  StepTimes times;
  bool aborted = false;
  bool non_finite = false;  // a loss was NaN or inf: the epoch stopped there
  // With loss scaling: optimizer steps skipped for inf/NaN gradients, and the scale at the end.
  int64_t skipped_steps = 0;
  double loss_scale = 0;
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
  const Loader& loader() const { return *loader_; }
  ModelEma* ema() { return ema_.get(); }
  const ModelEma* ema() const { return ema_.get(); }
  int accumulate() const { return schedule_.accumulate(); }
  double weight_decay() const { return schedule_.weight_decay(); }
  const Schedule& schedule() const { return schedule_; }

  // Optimizer state for checkpoints: per parameter name, the buffers (momentum_buffer, exp_avg, …).
  std::vector<OptimizerBuffer> optimizer_buffers() const { return optimizer_->buffers(); }
  void load_optimizer_buffers(const std::vector<OptimizerBuffer>& buffers) {
    optimizer_->load_buffers(buffers);
  }
  // Atomic: read on the event loop while an epoch advances it.
  int64_t last_opt_step() const { return last_opt_step_.load(); }
  void set_last_opt_step(int64_t v) { last_opt_step_.store(v); }
  // Host memory this trainer holds beyond the models: optimizer state, gradients, image cache.
  int64_t host_bytes();
  // Data-parallel: the parameters whose gradients are averaged, the bytes the last step sent.
  const GradientSync* gradient_sync() const { return grad_sync_.get(); }

 private:
  // The phases of one iteration, each its own step so that mixed precision (autocast around
  // forward_loss, a gradient scaler between backward and maybe_step) and data-parallel training
  // (gradients all-reduced at the end of backward; a sharded loader) each change one of them.
  void begin_epoch(int64_t epoch);
  int warmup(int64_t ni, double epoch_lr);  // → the accumulation for this iteration
  torch::Tensor batch_images(const torch::Tensor& images, int64_t ni) const;
  LossOutput forward_loss(const torch::Tensor& images, const torch::Tensor& targets);
  void backward(const LossOutput& loss);
  // Clip, step, zero the gradients and update the EMA once `accumulate` iterations passed.
  bool maybe_step(int64_t ni, int accumulate);
  // With loss scaling (fp16): a scaler on the model's device, this epoch's skipped steps at 0.
  void prepare_scaler();
  // With loss scaling: unscales the gradients; false when the step must be skipped (inf/NaN).
  bool unscale_gradients();
  void set_train_mode();
  // Data-parallel hooks: the Reducer over the trainable parameters; every rank's verdict on
  // stopping (abort, a non-finite loss) so that all stop at the same batch; the loss backward
  // differentiates (× world size, as the reference: the Reducer averages, the loss is a sum).
  void start_distributed();
  std::pair<bool, bool> agree(bool abort, bool non_finite);
  torch::Tensor loss_for_backward(const LossOutput& loss);
  void write_test_gradients();

  std::shared_ptr<YoloModelImpl> model_;
  std::shared_ptr<ModelEma> ema_;
  std::unique_ptr<Loader> loader_;
  TrainerOptions opts_;
  Schedule schedule_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<GradScaler> scaler_;
  c10::Device scaler_device_{torch::kCPU};
  int64_t skipped_steps_ = 0;  // this epoch
  torch::Device device_{torch::kCPU};
  std::atomic<int64_t> last_opt_step_{-1};
  std::unique_ptr<StepProfiler> profiler_ = StepProfiler::from_env();
  std::unique_ptr<GradientSync> grad_sync_;
  std::unique_ptr<GroupChannelSums> bn_sums_;
};

}  // namespace yolo5
