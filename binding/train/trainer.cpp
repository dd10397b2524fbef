#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <random>

#include "train/heap.h"

namespace yolo5 {

namespace {

using Clock = std::chrono::steady_clock;

// Adds the seconds since the last lap to a counter.
class Lap {
 public:
  void operator()(double& into) {
    auto now = Clock::now();
    into += std::chrono::duration<double>(now - tick_).count();
    tick_ = now;
  }

 private:
  Clock::time_point tick_ = Clock::now();
};

// --multi-scale: a size drawn per iteration from [imgsz/2, 1.5·imgsz + stride), a stride multiple,
// seeded by (iteration, seed) so runs repeat; the batch is resized so its long side has that size.
torch::Tensor multi_scale(const torch::Tensor& imgs, int64_t ni, const TrainerOptions& o) {
  std::mt19937_64 rng(static_cast<uint64_t>(ni) * 0x9e3779b97f4a7c15ULL ^ o.seed);
  const int lo = o.imgsz / 2, hi = o.imgsz * 3 / 2 + o.stride;
  const int sz = std::uniform_int_distribution<int>(lo, hi - 1)(rng) / o.stride * o.stride;
  const double sf = static_cast<double>(sz) / std::max(imgs.size(2), imgs.size(3));
  if (sf == 1) return imgs;
  auto side = [&](int64_t x) {
    return static_cast<int64_t>(std::ceil(x * sf / o.stride)) * o.stride;
  };
  return torch::nn::functional::interpolate(
      imgs, torch::nn::functional::InterpolateFuncOptions()
                .size(std::vector<int64_t>{side(imgs.size(2)), side(imgs.size(3))})
                .mode(torch::kBilinear)
                .align_corners(false));
}

}  // namespace

Trainer::Trainer(std::shared_ptr<YoloModelImpl> model, std::shared_ptr<ModelEma> ema,
                 std::unique_ptr<Loader> loader, TrainerOptions opts)
    : model_(std::move(model)),
      ema_(std::move(ema)),
      loader_(std::move(loader)),
      opts_(std::move(opts)),
      schedule_(opts_.hyp, opts_.epochs, opts_.cos_lr, opts_.nbs, opts_.batch,
                loader_->batches_per_epoch()) {
  tune_heap_for_training();
  if (opts_.channels_last) {
    // Same tensors (set_data keeps each parameter's identity for the optimizer), NHWC strides.
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
  optimizer_ = std::make_unique<Optimizer>(*model_, opts_.optimizer, opts_.hyp.lr0,
                                           opts_.hyp.momentum, schedule_.weight_decay());
  if (opts_.dist) start_distributed();
}

void Trainer::start_distributed() {
  // Only trainable parameters are registered: frozen ones are never communicated.
  std::vector<std::pair<std::string, torch::Tensor>> trainable;
  for (const auto& item : model_->named_parameters())
    if (item.value().requires_grad()) trainable.emplace_back(item.key(), item.value());
  grad_sync_ = std::make_unique<GradientSync>(opts_.dist, std::move(trainable));
  if (opts_.sync_bn) bn_sums_ = std::make_unique<GroupChannelSums>(opts_.dist);
}

std::pair<bool, bool> Trainer::agree(bool abort, bool non_finite) {
  if (!opts_.dist) return {abort, non_finite};
  const auto any = opts_.dist->any({abort, non_finite}, "agreeing on the next step");
  return {any[0], any[1]};
}

torch::Tensor Trainer::loss_for_backward(const LossOutput& loss) {
  if (!grad_sync_) return loss.total;
  grad_sync_->before_backward();
  return loss.total * static_cast<double>(opts_.dist->world());
}

// The test hook's file: a JSON line {"names": […], "shapes": […]}, then every gradient as
// little-endian float32 in NCHW order, in that order.
void Trainer::write_test_gradients() {
  std::ofstream out(opts_.test_gradients, std::ios::binary);
  std::string names, shapes;
  std::vector<torch::Tensor> grads;
  for (const auto& item : model_->named_parameters()) {
    if (!item.value().requires_grad() || !item.value().grad().defined()) continue;
    names += (names.empty() ? "\"" : ",\"") + item.key() + "\"";
    std::string shape;
    for (auto d : item.value().sizes()) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    shapes += (shapes.empty() ? "[" : ",[") + shape + "]";
    grads.push_back(item.value().grad().to(torch::kCPU, torch::kFloat).contiguous());
  }
  out << "{\"names\":[" << names << "],\"shapes\":[" << shapes << "]}\n";
  for (const auto& g : grads)
    out.write(static_cast<const char*>(g.data_ptr()), static_cast<std::streamsize>(g.nbytes()));
  TORCH_CHECK(out.good(), "could not write the test gradients to ", opts_.test_gradients);
  opts_.test_gradients.clear();  // once per trainer
}

void Trainer::set_train_mode() {
  model_->train(true);
  if (!opts_.freeze_bn) return;
  for (const auto& module : model_->modules(false)) {
    auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(module);
    if (bn && bn->weight.defined() && !bn->weight.requires_grad()) bn->eval();
  }
}

void Trainer::begin_epoch(int64_t epoch) {
  const double lr = schedule_.epoch_lr(epoch);
  for (size_t g = 0; g < kParamGroups; ++g) optimizer_->set(g, lr, schedule_.momentum());
  device_ = model_->detect().anchors.device();
  set_train_mode();
  prepare_scaler();
}

void Trainer::prepare_scaler() {
  skipped_steps_ = 0;
  // The scale carries over from epoch to epoch; a new device (model moved) starts a new scaler.
  if (opts_.loss_scale > 0 && (!scaler_ || scaler_device_ != device_)) {
    GradScalerOptions so;
    so.init_scale = opts_.loss_scale;
    scaler_ = std::make_unique<GradScaler>(so, device_);
    scaler_device_ = device_;
  }
}

int Trainer::warmup(int64_t ni, double epoch_lr) {
  for (size_t g = 0; g < kParamGroups; ++g) {
    const auto s = schedule_.warmup(g, ni, epoch_lr);
    optimizer_->set(g, s.lr, s.momentum);
  }
  return schedule_.warmup_accumulate(ni);
}

torch::Tensor Trainer::batch_images(const torch::Tensor& images, int64_t ni) const {
  auto imgs = images.to(device_)
                  .contiguous(opts_.channels_last ? torch::MemoryFormat::ChannelsLast
                                                  : torch::MemoryFormat::Contiguous)
                  .to(torch::kFloat)
                  .div_(255);
  return opts_.multi_scale ? multi_scale(imgs, ni, opts_) : imgs;
}

LossOutput Trainer::forward_loss(const torch::Tensor& images, const torch::Tensor& targets) {
  RECORD_USER_SCOPE(kForwardScope);  // these scopes name the phases for YOLO5_PROFILE
  std::vector<torch::Tensor> raw;
  {
    SyncBatchNormScope sync_bn(bn_sums_.get());
    AutocastGuard autocast(opts_.amp, device_);
    raw = model_->forward(images).raw;  // fp32 (the model casts its head's outputs)
  }
  const auto loss = [&] {
    RECORD_USER_SCOPE(kLossScope);
    return compute_loss(raw, targets, model_->detect(), opts_.loss);
  };
  return loss();
}

void Trainer::backward(const LossOutput& loss) {
  RECORD_USER_SCOPE(kBackwardScope);
  auto total = loss_for_backward(loss);
  if (scaler_) total = scaler_->scale(total);
  if (!grad_sync_) return total.backward();
  // Buckets are all-reduced as their gradients come in; finish waits for them.
  opts_.dist->guard("averaging the gradients", [&] {
    total.backward();
    grad_sync_->finish_backward();
    return 0;
  });
}

// Every rank holds the same averaged gradients, so every rank's scaler agrees on skipping.
bool Trainer::unscale_gradients() {
  if (!scaler_) return true;
  const bool finite = scaler_->unscale(optimizer_->parameters());
  scaler_->update(!finite);
  if (!finite) ++skipped_steps_;
  return finite;
}

bool Trainer::maybe_step(int64_t ni, int accumulate) {
  if (ni - last_opt_step_.load() < accumulate) return false;
  RECORD_USER_SCOPE(kOptimizerScope);
  // As the reference's GradScaler: unscale before clipping; a step with inf/NaN is skipped.
  if (unscale_gradients()) {
    torch::nn::utils::clip_grad_norm_(optimizer_->parameters(), kMaxGradNorm);
    optimizer_->step();
  }
  optimizer_->zero_grad();
  if (ema_) ema_->update(*model_);
  last_opt_step_.store(ni);
  return true;
}

EpochStats Trainer::run_epoch(int64_t epoch, bool mosaic,
                              const std::function<void(const BatchProgress&)>& on_batch,
                              const std::atomic<bool>& abort) {
  const auto t0 = Clock::now();
  EpochStats stats;
  const int64_t nb = loader_->batches_per_epoch();
  const double epoch_lr = schedule_.epoch_lr(epoch);
  begin_epoch(epoch);
  loader_->start_epoch(epoch, mosaic);
  torch::Tensor mloss = torch::zeros({3});
  int64_t i = 0;
  int accumulate = schedule_.accumulate();
  optimizer_->zero_grad();
  for (;; ++i) {
    // With several ranks, all stop at the same step: they agree after the forward pass.
    if (!opts_.dist && abort.load()) {
      stats.aborted = true;
      break;
    }
    Lap lap;
    auto batch = loader_->next();
    lap(stats.times.data);
    if (!batch) break;
    for (auto& e : batch->errors) stats.warnings.push_back(e);
    const int64_t ni = i + nb * epoch;
    if (schedule_.warming_up(ni)) accumulate = warmup(ni, epoch_lr);
    if (profiler_) profiler_->before_step(ni);
    auto imgs = batch_images(batch->images, ni);
    auto targets = batch->targets.to(device_);
    auto out = forward_loss(imgs, targets);
    auto parts = out.parts.to(torch::kCPU);
    lap(stats.times.forward);
    const bool finite = torch::isfinite(out.total).item<bool>();
    const auto [stop, non_finite] = agree(opts_.dist && abort.load(), !finite);
    if (stop) {
      stats.aborted = true;
      break;
    }
    if (non_finite) {
      stats.non_finite = true;
      stats.warnings.push_back((finite ? std::string("a loss on another rank was NaN or inf")
                                       : "loss is " + std::to_string(out.total.item<double>())) +
                               " at epoch " + std::to_string(epoch) + " batch " +
                               std::to_string(i));
      optimizer_->zero_grad();
      break;
    }
    backward(out);
    if (!opts_.test_gradients.empty()) write_test_gradients();
    lap(stats.times.backward);
    maybe_step(ni, accumulate);
    lap(stats.times.optimizer);
    if (profiler_) profiler_->after_step(ni);
    mloss = (mloss * static_cast<double>(i) + parts) / static_cast<double>(i + 1);
    stats.images += batch->images.size(0);
    if (on_batch) {
      BatchProgress p;
      p.epoch = epoch;
      p.batch = i;
      p.batches = nb;
      p.lbox = mloss[0].item<double>();
      p.lobj = mloss[1].item<double>();
      p.lcls = mloss[2].item<double>();
      p.instances = targets.size(0);
      p.size = imgs.size(3);
      p.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      p.times = stats.times;
      on_batch(p);
    }
  }
  loader_->stop();
  release_free_heap();
  model_->eval();
  stats.batches = i;
  stats.lbox = mloss[0].item<double>();
  stats.lobj = mloss[1].item<double>();
  stats.lcls = mloss[2].item<double>();
  for (size_t g = 0; g < kParamGroups; ++g) stats.lrs.push_back(optimizer_->lr(g));
  stats.skipped_steps = skipped_steps_;
  stats.loss_scale = scaler_ ? scaler_->scale_value() : 0;
  stats.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return stats;
}

int64_t Trainer::host_bytes() { return optimizer_->host_bytes() + loader_->cache_bytes(); }

}  // namespace yolo5
