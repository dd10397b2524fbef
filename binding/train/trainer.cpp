#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <random>
#include <sstream>
#include <type_traits>
#include <unordered_map>

namespace yolo5 {

namespace {

double interp(double x, double x0, double x1, double y0, double y1) {
  if (x <= x0) return y0;
  if (x >= x1) return y1;
  return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
}

struct GroupOptions {
  double lr, momentum, weight_decay;
};

// Reads or writes the learning rate and momentum of any of the three optimizers.
void set_group(torch::optim::OptimizerParamGroup& g, const std::string& kind, double lr,
               double momentum) {
  if (kind == "SGD") {
    auto& o = static_cast<torch::optim::SGDOptions&>(g.options());
    o.lr(lr);
    o.momentum(momentum);
  } else if (kind == "Adam") {
    auto& o = static_cast<torch::optim::AdamOptions&>(g.options());
    o.lr(lr);
    o.betas(std::make_tuple(momentum, 0.999));
  } else {
    auto& o = static_cast<torch::optim::AdamWOptions&>(g.options());
    o.lr(lr);
    o.betas(std::make_tuple(momentum, 0.999));
  }
}

double group_lr(torch::optim::OptimizerParamGroup& g) { return g.options().get_lr(); }

// Optimizer state is keyed by the parameter's TensorImpl: as its printed address in LibTorch 1.x,
// as the pointer itself in 2.x. This gives whichever key type the linked LibTorch uses.
template <typename Key>
Key state_key(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

using StateKey = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>::key_type;

}  // namespace

void ModelEma::update(YoloModelImpl& model) {
  torch::NoGradGuard no_grad;
  ++updates_;
  const double d = 0.9999 * (1 - std::exp(-static_cast<double>(updates_) / 2000.0));
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

Trainer::Trainer(std::shared_ptr<YoloModelImpl> model, std::shared_ptr<ModelEma> ema,
                 std::unique_ptr<Loader> loader, TrainerOptions opts)
    : model_(std::move(model)),
      ema_(std::move(ema)),
      loader_(std::move(loader)),
      opts_(std::move(opts)) {
  accumulate_ =
      std::max(static_cast<int>(std::nearbyint(static_cast<double>(opts_.nbs) / opts_.batch)), 1);
  if (opts_.channels_last) {
    // Same tensors (set_data keeps each parameter's identity for the optimizer), NHWC strides.
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
  weight_decay_ = opts_.hyp.weight_decay * opts_.batch * accumulate_ / opts_.nbs;

  // Three groups, only trainable parameters: biases (no decay), weights (decay), BatchNorm
  // weights (no decay).
  std::vector<torch::Tensor> biases, weights, bn_weights;
  group_names_.assign(3, {});
  for (const auto& item : model_->named_modules()) {
    const bool is_bn =
        std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(item.value()) != nullptr;
    const auto prefix = item.key().empty() ? std::string() : item.key() + ".";
    for (const auto& p : item.value()->named_parameters(false)) {
      if (!p.value().requires_grad()) continue;
      int g = p.key() == "bias" ? 0 : (p.key() == "weight" && is_bn) ? 2 : 1;
      (g == 0 ? biases : g == 1 ? weights : bn_weights).push_back(p.value());
      group_names_[g].push_back(prefix + p.key());
    }
  }
  TORCH_CHECK(!biases.empty() || !weights.empty() || !bn_weights.empty(),
              "every parameter is frozen: nothing to train");
  const double lr = opts_.hyp.lr0, m = opts_.hyp.momentum;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  auto add = [&](std::vector<torch::Tensor> params, double decay) {
    if (opts_.optimizer == "SGD") {
      groups.emplace_back(
          std::move(params),
          std::make_unique<torch::optim::SGDOptions>(
              torch::optim::SGDOptions(lr).momentum(m).nesterov(true).weight_decay(decay)));
    } else if (opts_.optimizer == "Adam") {
      groups.emplace_back(std::move(params),
                          std::make_unique<torch::optim::AdamOptions>(
                              torch::optim::AdamOptions(lr).betas({m, 0.999}).weight_decay(decay)));
    } else if (opts_.optimizer == "AdamW") {
      groups.emplace_back(
          std::move(params),
          std::make_unique<torch::optim::AdamWOptions>(
              torch::optim::AdamWOptions(lr).betas({m, 0.999}).weight_decay(decay)));
    } else {
      throw std::invalid_argument("unknown optimizer " + opts_.optimizer + " (SGD, Adam, AdamW)");
    }
  };
  add(biases, 0.0);
  add(weights, weight_decay_);
  add(bn_weights, 0.0);
  if (opts_.optimizer == "SGD") {
    optimizer_ = std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(lr));
  } else if (opts_.optimizer == "Adam") {
    optimizer_ = std::make_unique<torch::optim::Adam>(groups, torch::optim::AdamOptions(lr));
  } else {
    optimizer_ = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(lr));
  }
}

double Trainer::lr_factor(double e) const {
  const double E = static_cast<double>(opts_.epochs), lrf = opts_.hyp.lrf;
  if (opts_.cos_lr) return ((1 - std::cos(e * M_PI / E)) / 2) * (lrf - 1) + 1;
  return (1 - e / E) * (1.0 - lrf) + lrf;
}

void Trainer::set_train_mode() {
  model_->train(true);
  if (!opts_.freeze_bn) return;
  for (const auto& module : model_->modules(false)) {
    auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(module);
    if (bn && bn->weight.defined() && !bn->weight.requires_grad()) bn->eval();
  }
}

EpochStats Trainer::run_epoch(int64_t epoch, bool mosaic,
                              const std::function<void(const BatchProgress&)>& on_batch,
                              const std::atomic<bool>& abort) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  EpochStats stats;
  const int64_t nb = loader_->batches_per_epoch();
  const double nw = std::max(std::nearbyint(opts_.hyp.warmup_epochs * nb), 100.0);
  const double base_lr = opts_.hyp.lr0 * lr_factor(static_cast<double>(epoch));
  auto& groups = optimizer_->param_groups();
  for (auto& g : groups) set_group(g, opts_.optimizer, base_lr, opts_.hyp.momentum);
  auto device = model_->detect().anchors.device();
  set_train_mode();
  loader_->start_epoch(epoch, mosaic);
  torch::Tensor mloss = torch::zeros({3});
  int64_t i = 0;
  int accumulate = accumulate_;
  std::vector<torch::Tensor> params;
  for (auto& g : groups)
    for (auto& p : g.params()) params.push_back(p);
  optimizer_->zero_grad();
  for (;; ++i) {
    if (abort.load()) {
      stats.aborted = true;
      break;
    }
    auto tick = Clock::now();
    auto lap = [&tick](double& into) {
      auto now = Clock::now();
      into += std::chrono::duration<double>(now - tick).count();
      tick = now;
    };
    auto batch = loader_->next();
    lap(stats.times.data);
    if (!batch) break;
    for (auto& e : batch->errors) stats.warnings.push_back(e);
    const int64_t ni = i + nb * epoch;
    if (ni <= nw) {
      accumulate = std::max(1, static_cast<int>(std::nearbyint(interp(
                                   ni, 0, nw, 1, static_cast<double>(opts_.nbs) / opts_.batch))));
      for (size_t j = 0; j < groups.size(); ++j) {
        set_group(groups[j], opts_.optimizer,
                  interp(ni, 0, nw, j == 0 ? opts_.hyp.warmup_bias_lr : 0.0, base_lr),
                  interp(ni, 0, nw, opts_.hyp.warmup_momentum, opts_.hyp.momentum));
      }
    }
    auto imgs = batch->images.to(device)
                    .contiguous(opts_.channels_last ? torch::MemoryFormat::ChannelsLast
                                                    : torch::MemoryFormat::Contiguous)
                    .to(torch::kFloat)
                    .div_(255);
    if (opts_.multi_scale) {
      std::mt19937_64 rng(static_cast<uint64_t>(ni) * 0x9e3779b97f4a7c15ULL ^ opts_.seed);
      const int lo = opts_.imgsz / 2, hi = opts_.imgsz * 3 / 2 + opts_.stride;
      const int sz =
          std::uniform_int_distribution<int>(lo, hi - 1)(rng) / opts_.stride * opts_.stride;
      const double sf = static_cast<double>(sz) / std::max(imgs.size(2), imgs.size(3));
      if (sf != 1) {
        auto side = [&](int64_t x) {
          return static_cast<int64_t>(std::ceil(x * sf / opts_.stride)) * opts_.stride;
        };
        imgs = torch::nn::functional::interpolate(
            imgs, torch::nn::functional::InterpolateFuncOptions()
                      .size(std::vector<int64_t>{side(imgs.size(2)), side(imgs.size(3))})
                      .mode(torch::kBilinear)
                      .align_corners(false));
      }
    }
    auto targets = batch->targets.to(device);
    auto out = compute_loss(model_->forward(imgs).raw, targets, model_->detect(), opts_.loss);
    auto parts = out.parts.to(torch::kCPU);
    lap(stats.times.forward);
    if (!torch::isfinite(out.total).item<bool>()) {
      stats.non_finite = true;
      stats.warnings.push_back("loss is " + std::to_string(out.total.item<double>()) +
                               " at epoch " + std::to_string(epoch) + " batch " +
                               std::to_string(i));
      optimizer_->zero_grad();
      break;
    }
    out.total.backward();
    lap(stats.times.backward);
    if (ni - last_opt_step_ >= accumulate) {
      torch::nn::utils::clip_grad_norm_(params, opts_.max_grad_norm);
      optimizer_->step();
      optimizer_->zero_grad();
      if (ema_) ema_->update(*model_);
      last_opt_step_ = ni;
    }
    lap(stats.times.optimizer);
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
  model_->eval();
  stats.batches = i;
  stats.lbox = mloss[0].item<double>();
  stats.lobj = mloss[1].item<double>();
  stats.lcls = mloss[2].item<double>();
  for (auto& g : groups) stats.lrs.push_back(group_lr(g));
  stats.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return stats;
}

std::vector<std::tuple<std::string, std::string, torch::Tensor>> Trainer::optimizer_buffers()
    const {
  std::vector<std::tuple<std::string, std::string, torch::Tensor>> out;
  auto& groups = optimizer_->param_groups();
  auto& state = optimizer_->state();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t k = 0; k < groups[g].params().size(); ++k) {
      auto key = state_key<StateKey>(groups[g].params()[k]);
      auto it = state.find(key);
      if (it == state.end()) continue;
      const auto& name = group_names_[g][k];
      if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
        out.emplace_back(name, "momentum_buffer", s->momentum_buffer().clone());
      } else if (auto* a = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
        out.emplace_back(name, "exp_avg", a->exp_avg().clone());
        out.emplace_back(name, "exp_avg_sq", a->exp_avg_sq().clone());
        out.emplace_back(name, "step", torch::tensor(static_cast<double>(a->step())));
      } else if (auto* w = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
        out.emplace_back(name, "exp_avg", w->exp_avg().clone());
        out.emplace_back(name, "exp_avg_sq", w->exp_avg_sq().clone());
        out.emplace_back(name, "step", torch::tensor(static_cast<double>(w->step())));
      }
    }
  }
  return out;
}

void Trainer::load_optimizer_buffers(
    const std::vector<std::tuple<std::string, std::string, torch::Tensor>>& buffers) {
  std::unordered_map<std::string, std::pair<size_t, size_t>> where;
  for (size_t g = 0; g < group_names_.size(); ++g)
    for (size_t k = 0; k < group_names_[g].size(); ++k) where[group_names_[g][k]] = {g, k};
  auto& groups = optimizer_->param_groups();
  auto& state = optimizer_->state();
  std::unordered_map<std::string, std::unordered_map<std::string, torch::Tensor>> by_name;
  for (auto& [name, key, t] : buffers) by_name[name][key] = t;
  for (auto& [name, bufs] : by_name) {
    auto w = where.find(name);
    if (w == where.end()) continue;  // a parameter frozen now but not then: nothing to restore
    auto& p = groups[w->second.first].params()[w->second.second];
    auto key = state_key<StateKey>(p);
    auto like = [&](const std::string& k) {
      return bufs.at(k).to(p.device(), p.scalar_type()).view(p.sizes());
    };
    if (opts_.optimizer == "SGD" && bufs.count("momentum_buffer")) {
      auto s = std::make_unique<torch::optim::SGDParamState>();
      s->momentum_buffer(like("momentum_buffer"));
      state[key] = std::move(s);
    } else if (opts_.optimizer != "SGD" && bufs.count("exp_avg") && bufs.count("exp_avg_sq")) {
      const auto step =
          bufs.count("step") ? static_cast<int64_t>(bufs.at("step").item<double>()) : 0;
      if (opts_.optimizer == "Adam") {
        auto s = std::make_unique<torch::optim::AdamParamState>();
        s->exp_avg(like("exp_avg"));
        s->exp_avg_sq(like("exp_avg_sq"));
        s->step(step);
        state[key] = std::move(s);
      } else {
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        s->exp_avg(like("exp_avg"));
        s->exp_avg_sq(like("exp_avg_sq"));
        s->step(step);
        state[key] = std::move(s);
      }
    }
  }
}

}  // namespace yolo5
