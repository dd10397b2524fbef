#include "model/common.h"

#include <numeric>
#include <stdexcept>

#include "kernels/bn_act.h"

namespace yolo5 {

namespace F = torch::nn::functional;

thread_local double* FlopCounter::sink = nullptr;

torch::Tensor counted(torch::nn::Conv2d& conv, const torch::Tensor& x) {
  auto y = conv->forward(x);
  if (FlopCounter::sink != nullptr) {
    const auto& o = conv->options;
    const auto& k = o.kernel_size();
    double per_output = static_cast<double>(o.in_channels() / o.groups()) * k->at(0) * k->at(1);
    if (o.bias()) per_output += 1;
    *FlopCounter::sink += static_cast<double>(y.numel()) * per_output;
  }
  return y;
}

void count_flops(torch::nn::BatchNorm2d& bn, const torch::Tensor& x) {
  if (FlopCounter::sink != nullptr) *FlopCounter::sink += 4.0 * static_cast<double>(x.numel());
}

// BatchNorm without the fused kernel: --sync-bn's statistics over every rank when training.
static torch::Tensor plain_batch_norm(torch::nn::BatchNorm2d& bn, const torch::Tensor& x) {
  if (bn->is_training() && sync_batch_norm() != nullptr) return synced_batch_norm(bn, x);
  return bn->forward(x);
}

torch::Tensor counted(torch::nn::BatchNorm2d& bn, const torch::Tensor& x) {
  count_flops(bn, x);
  return plain_batch_norm(bn, x);
}

torch::Tensor Activation::operator()(const torch::Tensor& x) const {
  if (kind == "SiLU") return torch::silu(x);
  if (kind == "ReLU") return torch::relu(x);
  if (kind == "LeakyReLU") return torch::leaky_relu(x, slope);
  if (kind == "Hardswish") return torch::hardswish(x);
  if (kind == "Sigmoid") return torch::sigmoid(x);
  if (kind == "Identity") return x;
  throw std::invalid_argument("unknown activation " + kind);
}

void Activation::apply_(torch::Tensor& x) const {
  if (kind == "SiLU") {
    torch::silu_(x);
  } else if (kind == "ReLU") {
    torch::relu_(x);
  } else if (kind == "LeakyReLU") {
    torch::leaky_relu_(x, slope);
  } else if (kind == "Hardswish") {
    torch::hardswish_(x);
  } else if (kind == "Sigmoid") {
    torch::sigmoid_(x);
  } else if (kind != "Identity") {
    throw std::invalid_argument("unknown activation " + kind);
  }
}

torch::Tensor LayerImpl::forward_many(const std::vector<torch::Tensor>& xs) {
  TORCH_CHECK(xs.size() == 1, "layer takes one input, got ", xs.size());
  return forward(xs[0]);
}

void LayerImpl::fuse() {
  for (auto& child : children()) {
    if (auto layer = std::dynamic_pointer_cast<LayerImpl>(child)) layer->fuse();
  }
}

// --- Conv ---------------------------------------------------------------------------------

static int64_t autopad(int64_t k, int64_t d) { return (d > 1 ? d * (k - 1) + 1 : k) / 2; }

ConvImpl::ConvImpl(const ConvOptions& o, const Activation& act) : act_(act), use_act_(o.act) {
  std::array<int64_t, 2> p =
      o.p ? *o.p : std::array<int64_t, 2>{autopad(o.k[0], o.d), autopad(o.k[1], o.d)};
  conv = register_module("conv",
                         torch::nn::Conv2d(torch::nn::Conv2dOptions(o.c1, o.c2, {o.k[0], o.k[1]})
                                               .stride({o.s[0], o.s[1]})
                                               .padding({p[0], p[1]})
                                               .dilation(o.d)
                                               .groups(o.g)
                                               .bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(o.c2));
  // act=False gives each Conv its own nn.Identity in the reference (it counts as a module there).
  if (!use_act_) register_module("act", torch::nn::Identity());
}

torch::Tensor ConvImpl::forward(const torch::Tensor& x) {
  auto y = counted(conv, x);
  if (!fused_) {
    count_flops(bn, y);
    // BatchNorm and SiLU (or no activation) in one fused CPU kernel where it applies.
    if (!use_act_ || act_.kind == "SiLU" || act_.kind == "Identity") {
      auto z = batch_norm_act(
          bn, y, use_act_ && act_.kind == "SiLU" ? FusedAct::SiLU : FusedAct::Identity, true);
      if (z.defined()) return z;
    }
    y = plain_batch_norm(bn, y);
  }
  if (!use_act_) return y;
  // y is this call's own fresh tensor: without autograd (inference, a frozen prefix) the
  // activation can overwrite it instead of allocating another.
  if (!y.requires_grad()) {
    act_.apply_(y);
    return y;
  }
  return act_(y);
}

void ConvImpl::fuse() {
  if (fused_) return;
  torch::NoGradGuard no_grad;
  const auto& o = conv->options;
  auto opts = torch::nn::Conv2dOptions(o.in_channels(), o.out_channels(), o.kernel_size())
                  .stride(o.stride())
                  .padding(o.padding())
                  .dilation(o.dilation())
                  .groups(o.groups());
  auto w = conv->weight;
  auto scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
  auto fused = torch::nn::Conv2d(opts.bias(true));
  fused->to(w.device(), w.scalar_type());
  fused->weight.copy_(w * scale.view({-1, 1, 1, 1}));
  fused->bias.copy_(bn->bias - bn->running_mean * scale);
  conv = replace_module("conv", fused);
  unregister_module("bn");
  bn = nullptr;
  fused_ = true;
}

// --- containers and small blocks ----------------------------------------------------------

SequentialImpl::SequentialImpl(std::vector<Layer> items) : items_(std::move(items)) {
  for (size_t i = 0; i < items_.size(); ++i) register_module(std::to_string(i), items_[i]);
}

torch::Tensor SequentialImpl::forward(const torch::Tensor& x) {
  auto y = x;
  for (auto& item : items_) y = item->forward(y);
  return y;
}

static std::shared_ptr<ConvImpl> make_conv(int64_t c1, int64_t c2, int64_t k, int64_t s,
                                           const Activation& act, int64_t g = 1,
                                           bool use_act = true) {
  ConvOptions o;
  o.c1 = c1;
  o.c2 = c2;
  o.k = {k, k};
  o.s = {s, s};
  o.g = g;
  o.act = use_act;
  return std::make_shared<ConvImpl>(o, act);
}

BottleneckImpl::BottleneckImpl(int64_t c1, int64_t c2, bool shortcut, int64_t g, double e,
                               const Activation& act)
    : add_(shortcut && c1 == c2) {
  auto c_ = static_cast<int64_t>(c2 * e);
  cv1_ = register_module("cv1", make_conv(c1, c_, 1, 1, act));
  cv2_ = register_module("cv2", make_conv(c_, c2, 3, 1, act, g));
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  auto y = cv2_->forward(cv1_->forward(x));
  return add_ ? x + y : y;
}

CrossConvImpl::CrossConvImpl(int64_t c1, int64_t c2, int64_t k, int64_t s, int64_t g, double e,
                             bool shortcut, const Activation& act)
    : add_(shortcut && c1 == c2) {
  auto c_ = static_cast<int64_t>(c2 * e);
  ConvOptions a;
  a.c1 = c1;
  a.c2 = c_;
  a.k = {1, k};
  a.s = {1, s};
  cv1_ = register_module("cv1", std::make_shared<ConvImpl>(a, act));
  ConvOptions b;
  b.c1 = c_;
  b.c2 = c2;
  b.k = {k, 1};
  b.s = {s, 1};
  b.g = g;
  cv2_ = register_module("cv2", std::make_shared<ConvImpl>(b, act));
}

torch::Tensor CrossConvImpl::forward(const torch::Tensor& x) {
  auto y = cv2_->forward(cv1_->forward(x));
  return add_ ? x + y : y;
}

GhostConvImpl::GhostConvImpl(int64_t c1, int64_t c2, int64_t k, int64_t s, int64_t g, bool act,
                             const Activation& activation) {
  auto c_ = c2 / 2;
  cv1_ = register_module("cv1", make_conv(c1, c_, k, s, activation, g, act));
  cv2_ = register_module("cv2", make_conv(c_, c_, 5, 1, activation, c_, act));
}

torch::Tensor GhostConvImpl::forward(const torch::Tensor& x) {
  auto y = cv1_->forward(x);
  return torch::cat({y, cv2_->forward(y)}, 1);
}

static Layer make_dwconv(int64_t c1, int64_t c2, int64_t k, int64_t s, bool use_act,
                         const Activation& act) {
  return make_conv(c1, c2, k, s, act, std::gcd(c1, c2), use_act);
}

GhostBottleneckImpl::GhostBottleneckImpl(int64_t c1, int64_t c2, int64_t k, int64_t s,
                                         const Activation& act) {
  auto c_ = c2 / 2;
  std::vector<Layer> conv{
      std::make_shared<GhostConvImpl>(c1, c_, 1, 1, 1, true, act),
      s == 2 ? make_dwconv(c_, c_, k, s, false, act) : Layer(std::make_shared<IdentityImpl>()),
      std::make_shared<GhostConvImpl>(c_, c2, 1, 1, 1, false, act)};
  conv_ = register_module("conv", std::make_shared<SequentialImpl>(std::move(conv)));
  if (s == 2) {
    std::vector<Layer> sc{make_dwconv(c1, c1, k, s, false, act),
                          make_conv(c1, c2, 1, 1, act, 1, false)};
    shortcut_ = register_module("shortcut", std::make_shared<SequentialImpl>(std::move(sc)));
  } else {
    shortcut_ = register_module("shortcut", std::make_shared<IdentityImpl>());
  }
}

torch::Tensor GhostBottleneckImpl::forward(const torch::Tensor& x) {
  return conv_->forward(x) + shortcut_->forward(x);
}

C3Impl::C3Impl(int64_t c1, int64_t c2, int64_t n, bool shortcut, int64_t g, double e, C3Kind kind,
               const Activation& act) {
  auto c_ = static_cast<int64_t>(c2 * e);
  cv1_ = register_module("cv1", make_conv(c1, c_, 1, 1, act));
  cv2_ = register_module("cv2", make_conv(c1, c_, 1, 1, act));
  cv3_ = register_module("cv3", make_conv(2 * c_, c2, 1, 1, act));
  std::vector<Layer> blocks;
  for (int64_t i = 0; i < n; ++i) {
    switch (kind) {
      case C3Kind::Bottleneck:
        blocks.push_back(std::make_shared<BottleneckImpl>(c_, c_, shortcut, g, 1.0, act));
        break;
      case C3Kind::Cross:
        blocks.push_back(std::make_shared<CrossConvImpl>(c_, c_, 3, 1, g, 1.0, shortcut, act));
        break;
      case C3Kind::Ghost:
        blocks.push_back(std::make_shared<GhostBottleneckImpl>(c_, c_, 3, 1, act));
        break;
    }
  }
  m_ = register_module("m", std::make_shared<SequentialImpl>(std::move(blocks)));
}

torch::Tensor C3Impl::forward(const torch::Tensor& x) {
  return cv3_->forward(torch::cat({m_->forward(cv1_->forward(x)), cv2_->forward(x)}, 1));
}

BottleneckCSPImpl::BottleneckCSPImpl(int64_t c1, int64_t c2, int64_t n, bool shortcut, int64_t g,
                                     double e, const Activation& act) {
  auto c_ = static_cast<int64_t>(c2 * e);
  cv1_ = register_module("cv1", make_conv(c1, c_, 1, 1, act));
  cv2_ = register_module("cv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c_, 1).bias(false)));
  cv3_ = register_module("cv3", torch::nn::Conv2d(torch::nn::Conv2dOptions(c_, c_, 1).bias(false)));
  cv4_ = register_module("cv4", make_conv(2 * c_, c2, 1, 1, act));
  bn_ = register_module("bn", torch::nn::BatchNorm2d(2 * c_));
  register_module("act", torch::nn::SiLU());  // its own instance in the reference
  std::vector<Layer> blocks;
  for (int64_t i = 0; i < n; ++i)
    blocks.push_back(std::make_shared<BottleneckImpl>(c_, c_, shortcut, g, 1.0, act));
  m_ = register_module("m", std::make_shared<SequentialImpl>(std::move(blocks)));
}

torch::Tensor BottleneckCSPImpl::forward(const torch::Tensor& x) {
  auto y1 = counted(cv3_, m_->forward(cv1_->forward(x)));
  auto y2 = counted(cv2_, x);
  return cv4_->forward(torch::silu(counted(bn_, torch::cat({y1, y2}, 1))));
}

SPPImpl::SPPImpl(int64_t c1, int64_t c2, const std::vector<int64_t>& ks, const Activation& act) {
  auto c_ = c1 / 2;
  cv1_ = register_module("cv1", make_conv(c1, c_, 1, 1, act));
  cv2_ = register_module("cv2", make_conv(c_ * static_cast<int64_t>(ks.size() + 1), c2, 1, 1, act));
  auto list = register_module("m", torch::nn::ModuleList());
  for (auto k : ks) {
    pools_.emplace_back(torch::nn::MaxPool2dOptions(k).stride(1).padding(k / 2));
    list->push_back(pools_.back());
  }
}

torch::Tensor SPPImpl::forward(const torch::Tensor& x) {
  auto y = cv1_->forward(x);
  std::vector<torch::Tensor> parts{y};
  for (auto& pool : pools_) parts.push_back(pool->forward(y));
  return cv2_->forward(torch::cat(parts, 1));
}

SPPFImpl::SPPFImpl(int64_t c1, int64_t c2, int64_t k, const Activation& act) {
  auto c_ = c1 / 2;
  cv1_ = register_module("cv1", make_conv(c1, c_, 1, 1, act));
  cv2_ = register_module("cv2", make_conv(c_ * 4, c2, 1, 1, act));
  m_ = register_module(
      "m", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(k).stride(1).padding(k / 2)));
}

torch::Tensor SPPFImpl::forward(const torch::Tensor& x) {
  auto y0 = cv1_->forward(x);
  auto y1 = m_->forward(y0);
  auto y2 = m_->forward(y1);
  return cv2_->forward(torch::cat({y0, y1, y2, m_->forward(y2)}, 1));
}

FocusImpl::FocusImpl(const ConvOptions& o, const Activation& act) {
  auto inner = o;
  inner.c1 = o.c1 * 4;
  conv_ = register_module("conv", std::make_shared<ConvImpl>(inner, act));
}

torch::Tensor FocusImpl::forward(const torch::Tensor& x) {
  auto h = x.size(2), w = x.size(3);
  auto rows = [&](int64_t start) { return x.slice(2, start, h, 2); };
  // Space-to-depth: (even, even), (odd, even), (even, odd), (odd, odd) rows/columns.
  return conv_->forward(torch::cat({rows(0).slice(3, 0, w, 2), rows(1).slice(3, 0, w, 2),
                                    rows(0).slice(3, 1, w, 2), rows(1).slice(3, 1, w, 2)},
                                   1));
}

torch::Tensor ConcatImpl::forward_many(const std::vector<torch::Tensor>& xs) {
  return torch::cat(xs, dim_);
}

torch::Tensor UpsampleImpl::forward(const torch::Tensor& x) {
  auto opts = F::InterpolateFuncOptions().scale_factor(std::vector<double>{scale_, scale_});
  if (mode_ == "nearest") {
    opts.mode(torch::kNearest);
  } else if (mode_ == "bilinear") {
    opts.mode(torch::kBilinear).align_corners(false);
  } else {
    throw std::invalid_argument("unsupported upsample mode " + mode_);
  }
  return F::interpolate(x, opts);
}

// --- the factory --------------------------------------------------------------------------

namespace {

struct Args {
  const LayerSpec& spec;

  const Arg* at(size_t i) const { return i < spec.args.size() ? &spec.args[i] : nullptr; }
  [[noreturn]] void fail(size_t i, const std::string& what) const {
    throw std::invalid_argument("model." + std::to_string(spec.index) + " " + spec.module +
                                ": arg " + std::to_string(i) + " " + what);
  }
  int64_t integer(size_t i, int64_t fallback) const {
    auto a = at(i);
    if (a == nullptr || a->is_none()) return fallback;
    if (a->kind != Arg::Kind::Number) fail(i, "must be a number");
    return static_cast<int64_t>(a->number);
  }
  double real(size_t i, double fallback) const {
    auto a = at(i);
    if (a == nullptr || a->is_none()) return fallback;
    if (a->kind != Arg::Kind::Number) fail(i, "must be a number");
    return a->number;
  }
  bool flag(size_t i, bool fallback) const {
    auto a = at(i);
    if (a == nullptr || a->is_none()) return fallback;
    if (a->kind == Arg::Kind::Bool || a->kind == Arg::Kind::Number) return a->number != 0;
    fail(i, "must be a bool");
  }
  // A kernel/stride/padding given as a number or a [h, w] pair.
  std::optional<std::array<int64_t, 2>> pair(size_t i) const {
    auto a = at(i);
    if (a == nullptr || a->is_none()) return std::nullopt;
    if (a->kind == Arg::Kind::Number) {
      auto v = static_cast<int64_t>(a->number);
      return std::array<int64_t, 2>{v, v};
    }
    if (a->kind == Arg::Kind::List && a->items.size() == 2)
      return std::array<int64_t, 2>{static_cast<int64_t>(a->items[0].number),
                                    static_cast<int64_t>(a->items[1].number)};
    fail(i, "must be a number or a pair");
  }
  std::vector<int64_t> ints(size_t i, std::vector<int64_t> fallback) const {
    auto a = at(i);
    if (a == nullptr || a->is_none()) return fallback;
    if (a->kind == Arg::Kind::Number) return {static_cast<int64_t>(a->number)};
    if (a->kind != Arg::Kind::List) fail(i, "must be a list of numbers");
    std::vector<int64_t> out;
    for (auto& item : a->items) out.push_back(static_cast<int64_t>(item.number));
    return out;
  }
};

ConvOptions conv_options(const Args& a, bool with_groups_and_dilation) {
  ConvOptions o;
  o.c1 = a.integer(0, 0);
  o.c2 = a.integer(1, 0);
  o.k = a.pair(2).value_or(std::array<int64_t, 2>{1, 1});
  o.s = a.pair(3).value_or(std::array<int64_t, 2>{1, 1});
  o.p = a.pair(4);
  o.g = a.integer(5, 1);
  if (with_groups_and_dilation) {
    o.d = a.integer(6, 1);
    o.act = a.flag(7, true);
  } else {
    o.act = a.flag(6, true);  // Focus(c1, c2, k, s, p, g, act)
  }
  return o;
}

}  // namespace

Layer make_block(const LayerSpec& spec, const Activation& act) {
  Args a{spec};
  const auto& m = spec.module;
  if (m == "Conv") return std::make_shared<ConvImpl>(conv_options(a, true), act);
  if (m == "DWConv") {
    // DWConv(c1, c2, k=1, s=1, d=1, act=True)
    ConvOptions o;
    o.c1 = a.integer(0, 0);
    o.c2 = a.integer(1, 0);
    o.k = a.pair(2).value_or(std::array<int64_t, 2>{1, 1});
    o.s = a.pair(3).value_or(std::array<int64_t, 2>{1, 1});
    o.d = a.integer(4, 1);
    o.act = a.flag(5, true);
    o.g = std::gcd(o.c1, o.c2);
    return std::make_shared<ConvImpl>(o, act);
  }
  if (m == "Focus") return std::make_shared<FocusImpl>(conv_options(a, false), act);
  if (m == "GhostConv")
    return std::make_shared<GhostConvImpl>(a.integer(0, 0), a.integer(1, 0), a.integer(2, 1),
                                           a.integer(3, 1), a.integer(4, 1), a.flag(5, true), act);
  if (m == "Bottleneck")
    return std::make_shared<BottleneckImpl>(a.integer(0, 0), a.integer(1, 0), a.flag(2, true),
                                            a.integer(3, 1), a.real(4, 0.5), act);
  if (m == "CrossConv")
    return std::make_shared<CrossConvImpl>(a.integer(0, 0), a.integer(1, 0), a.integer(2, 3),
                                           a.integer(3, 1), a.integer(4, 1), a.real(5, 1.0),
                                           a.flag(6, false), act);
  if (m == "GhostBottleneck")
    return std::make_shared<GhostBottleneckImpl>(a.integer(0, 0), a.integer(1, 0), a.integer(2, 3),
                                                 a.integer(3, 1), act);
  if (m == "C3" || m == "C3x" || m == "C3Ghost") {
    auto kind = m == "C3" ? C3Kind::Bottleneck : m == "C3x" ? C3Kind::Cross : C3Kind::Ghost;
    return std::make_shared<C3Impl>(a.integer(0, 0), a.integer(1, 0), a.integer(2, 1),
                                    a.flag(3, true), a.integer(4, 1), a.real(5, 0.5), kind, act);
  }
  if (m == "BottleneckCSP")
    return std::make_shared<BottleneckCSPImpl>(a.integer(0, 0), a.integer(1, 0), a.integer(2, 1),
                                               a.flag(3, true), a.integer(4, 1), a.real(5, 0.5),
                                               act);
  if (m == "SPP")
    return std::make_shared<SPPImpl>(a.integer(0, 0), a.integer(1, 0), a.ints(2, {5, 9, 13}), act);
  if (m == "SPPF")
    return std::make_shared<SPPFImpl>(a.integer(0, 0), a.integer(1, 0), a.integer(2, 5), act);
  if (m == "Concat") return std::make_shared<ConcatImpl>(a.integer(0, 1));
  if (m == "nn.Upsample") {
    // nn.Upsample(size=None, scale_factor, mode)
    auto mode =
        a.at(2) != nullptr && a.at(2)->kind == Arg::Kind::String ? a.at(2)->text : "nearest";
    return std::make_shared<UpsampleImpl>(a.real(1, 2.0), mode);
  }
  if (m == "nn.Identity") return std::make_shared<IdentityImpl>();
  throw std::invalid_argument("model." + std::to_string(spec.index) + ": unknown module " + m);
}

}  // namespace yolo5
