#include "train/optimizer.h"

#include <sstream>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>

namespace yolo5 {

namespace {

using torch::optim::AdamOptions;
using torch::optim::AdamParamState;
using torch::optim::AdamWOptions;
using torch::optim::AdamWParamState;
using torch::optim::SGDOptions;
using torch::optim::SGDParamState;

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

std::unique_ptr<torch::optim::OptimizerOptions> group_options(OptimizerKind kind, double lr,
                                                              double m, double decay) {
  switch (kind) {
    case OptimizerKind::SGD:
      return std::make_unique<SGDOptions>(
          SGDOptions(lr).momentum(m).nesterov(true).weight_decay(decay));
    case OptimizerKind::Adam:
      return std::make_unique<AdamOptions>(AdamOptions(lr).betas({m, 0.999}).weight_decay(decay));
    case OptimizerKind::AdamW:
      return std::make_unique<AdamWOptions>(AdamWOptions(lr).betas({m, 0.999}).weight_decay(decay));
  }
  throw std::invalid_argument("unknown optimizer kind");
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(
    OptimizerKind kind, std::vector<torch::optim::OptimizerParamGroup> groups, double lr) {
  switch (kind) {
    case OptimizerKind::SGD:
      return std::make_unique<torch::optim::SGD>(std::move(groups), SGDOptions(lr));
    case OptimizerKind::Adam:
      return std::make_unique<torch::optim::Adam>(std::move(groups), AdamOptions(lr));
    case OptimizerKind::AdamW:
      return std::make_unique<torch::optim::AdamW>(std::move(groups), AdamWOptions(lr));
  }
  throw std::invalid_argument("unknown optimizer kind");
}

template <typename State>
void add_adam_buffers(const std::string& name, const State& s, std::vector<OptimizerBuffer>& out) {
  out.push_back({name, "exp_avg", s.exp_avg().clone()});
  out.push_back({name, "exp_avg_sq", s.exp_avg_sq().clone()});
  out.push_back({name, "step", torch::tensor(static_cast<double>(s.step()))});
}

using BufferMap = std::unordered_map<std::string, torch::Tensor>;

template <typename State>
std::unique_ptr<State> adam_state(const BufferMap& bufs, const torch::Tensor& p) {
  auto like = [&](const std::string& k) {
    return bufs.at(k).to(p.device(), p.scalar_type()).view(p.sizes());
  };
  auto s = std::make_unique<State>();
  s->exp_avg(like("exp_avg"));
  s->exp_avg_sq(like("exp_avg_sq"));
  s->step(bufs.count("step") ? static_cast<int64_t>(bufs.at("step").item<double>()) : 0);
  return s;
}

int64_t host_nbytes(const torch::Tensor& t) {
  return t.defined() && t.device().is_cpu() ? static_cast<int64_t>(t.nbytes()) : 0;
}

}  // namespace

OptimizerKind optimizer_kind(const std::string& name) {
  if (name == "SGD") return OptimizerKind::SGD;
  if (name == "Adam") return OptimizerKind::Adam;
  if (name == "AdamW") return OptimizerKind::AdamW;
  throw std::invalid_argument("unknown optimizer " + name + " (SGD, Adam, AdamW)");
}

const char* optimizer_name(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::SGD:
      return "SGD";
    case OptimizerKind::Adam:
      return "Adam";
    case OptimizerKind::AdamW:
      return "AdamW";
  }
  return "?";
}

Optimizer::Optimizer(YoloModelImpl& model, OptimizerKind kind, double lr, double momentum,
                     double weight_decay)
    : kind_(kind), names_(kParamGroups) {
  std::vector<std::vector<torch::Tensor>> params(kParamGroups);
  for (const auto& item : model.named_modules()) {
    const bool is_bn =
        std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(item.value()) != nullptr;
    const auto prefix = item.key().empty() ? std::string() : item.key() + ".";
    for (const auto& p : item.value()->named_parameters(false)) {
      if (!p.value().requires_grad()) continue;
      const size_t g = p.key() == "bias"                ? kBiases
                       : (p.key() == "weight" && is_bn) ? kBatchNormWeights
                                                        : kWeights;
      params[g].push_back(p.value());
      names_[g].push_back(prefix + p.key());
    }
  }
  TORCH_CHECK(
      !params[kBiases].empty() || !params[kWeights].empty() || !params[kBatchNormWeights].empty(),
      "every parameter is frozen: nothing to train");
  for (const auto& group : params) params_.insert(params_.end(), group.begin(), group.end());
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (size_t g = 0; g < kParamGroups; ++g) {
    const double decay = g == kWeights ? weight_decay : 0.0;
    groups.emplace_back(std::move(params[g]), group_options(kind, lr, momentum, decay));
  }
  impl_ = make_optimizer(kind, std::move(groups), lr);
}

void Optimizer::set(size_t group, double lr, double momentum) {
  auto& options = impl_->param_groups().at(group).options();
  switch (kind_) {
    case OptimizerKind::SGD: {
      auto& o = static_cast<SGDOptions&>(options);
      o.lr(lr);
      o.momentum(momentum);
      break;
    }
    case OptimizerKind::Adam: {
      auto& o = static_cast<AdamOptions&>(options);
      o.lr(lr);
      o.betas(std::make_tuple(momentum, 0.999));
      break;
    }
    case OptimizerKind::AdamW: {
      auto& o = static_cast<AdamWOptions&>(options);
      o.lr(lr);
      o.betas(std::make_tuple(momentum, 0.999));
      break;
    }
  }
}

double Optimizer::lr(size_t group) const {
  return impl_->param_groups().at(group).options().get_lr();
}

std::vector<OptimizerBuffer> Optimizer::buffers() const {
  std::vector<OptimizerBuffer> out;
  const auto& groups = impl_->param_groups();
  const auto& state = impl_->state();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t k = 0; k < groups[g].params().size(); ++k) {
      auto it = state.find(state_key<StateKey>(groups[g].params()[k]));
      if (it == state.end()) continue;
      const auto& name = names_[g][k];
      switch (kind_) {
        case OptimizerKind::SGD:
          out.push_back({name, "momentum_buffer",
                         static_cast<const SGDParamState&>(*it->second).momentum_buffer().clone()});
          break;
        case OptimizerKind::Adam:
          add_adam_buffers(name, static_cast<const AdamParamState&>(*it->second), out);
          break;
        case OptimizerKind::AdamW:
          add_adam_buffers(name, static_cast<const AdamWParamState&>(*it->second), out);
          break;
      }
    }
  }
  return out;
}

void Optimizer::load_buffers(const std::vector<OptimizerBuffer>& buffers) {
  std::unordered_map<std::string, std::pair<size_t, size_t>> where;
  for (size_t g = 0; g < names_.size(); ++g)
    for (size_t k = 0; k < names_[g].size(); ++k) where[names_[g][k]] = {g, k};
  std::unordered_map<std::string, BufferMap> by_name;
  for (const auto& b : buffers) by_name[b.name][b.key] = b.tensor;
  auto& groups = impl_->param_groups();
  auto& state = impl_->state();
  for (auto& [name, bufs] : by_name) {
    auto w = where.find(name);
    if (w == where.end()) continue;  // a parameter frozen now but not then: nothing to restore
    auto& p = groups[w->second.first].params()[w->second.second];
    auto key = state_key<StateKey>(p);
    if (kind_ == OptimizerKind::SGD) {
      if (!bufs.count("momentum_buffer")) continue;
      auto s = std::make_unique<SGDParamState>();
      s->momentum_buffer(
          bufs.at("momentum_buffer").to(p.device(), p.scalar_type()).view(p.sizes()));
      state[key] = std::move(s);
    } else if (bufs.count("exp_avg") && bufs.count("exp_avg_sq")) {
      if (kind_ == OptimizerKind::Adam)
        state[key] = adam_state<AdamParamState>(bufs, p);
      else
        state[key] = adam_state<AdamWParamState>(bufs, p);
    }
  }
}

int64_t Optimizer::host_bytes() const {
  int64_t bytes = 0;
  for (const auto& p : params_) bytes += host_nbytes(p.grad());
  for (const auto& item : impl_->state()) {
    const auto& s = *item.second;
    if (kind_ == OptimizerKind::SGD) {
      bytes += host_nbytes(static_cast<const SGDParamState&>(s).momentum_buffer());
    } else if (kind_ == OptimizerKind::Adam) {
      const auto& a = static_cast<const AdamParamState&>(s);
      bytes += host_nbytes(a.exp_avg()) + host_nbytes(a.exp_avg_sq());
    } else {
      const auto& a = static_cast<const AdamWParamState&>(s);
      bytes += host_nbytes(a.exp_avg()) + host_nbytes(a.exp_avg_sq());
    }
  }
  return bytes;
}

}  // namespace yolo5
