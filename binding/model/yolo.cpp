#include "model/yolo.h"

#include <cmath>
#include <optional>
#include <stdexcept>

namespace yolo5 {

// --- Detect -------------------------------------------------------------------------------

DetectImpl::DetectImpl(int64_t nc_, const std::vector<std::vector<double>>& anchor_rows,
                       const std::vector<int64_t>& ch)
    : nc(nc_), no(nc_ + 5), nl(static_cast<int64_t>(anchor_rows.size())) {
  TORCH_CHECK(nl > 0 && nl == static_cast<int64_t>(ch.size()), "Detect: ", anchor_rows.size(),
              " anchor levels for ", ch.size(), " inputs");
  na = static_cast<int64_t>(anchor_rows[0].size() / 2);
  std::vector<float> flat;
  for (auto& row : anchor_rows) {
    TORCH_CHECK(static_cast<int64_t>(row.size()) == na * 2, "Detect: every level needs ", na,
                " anchor pairs");
    flat.insert(flat.end(), row.begin(), row.end());
  }
  anchors = register_buffer("anchors", torch::tensor(flat).view({nl, na, 2}));
  m = register_module("m", torch::nn::ModuleList());
  for (auto c : ch) {
    convs_.emplace_back(torch::nn::Conv2dOptions(c, no * na, 1));
    m->push_back(convs_.back());
  }
}

torch::Tensor DetectImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(false, "Detect takes the list of its input levels");
}

std::vector<torch::Tensor> DetectImpl::forward_levels(const std::vector<torch::Tensor>& xs) {
  TORCH_CHECK(static_cast<int64_t>(xs.size()) == nl, "Detect: expected ", nl, " inputs, got ",
              xs.size());
  std::vector<torch::Tensor> out;
  out.reserve(xs.size());
  for (int64_t i = 0; i < nl; ++i) {
    auto y = counted(convs_[i], xs[i]);
    auto bs = y.size(0), ny = y.size(2), nx = y.size(3);
    out.push_back(y.view({bs, na, no, ny, nx}).permute({0, 1, 3, 4, 2}).contiguous());
  }
  return out;
}

torch::Tensor DetectImpl::decode(const std::vector<torch::Tensor>& raw) {
  std::vector<torch::Tensor> z;
  z.reserve(raw.size());
  for (int64_t i = 0; i < nl; ++i) {
    const auto& x = raw[i];
    auto bs = x.size(0), ny = x.size(2), nx = x.size(3);
    auto opts = x.options();
    auto yv = torch::arange(ny, opts).view({1, 1, ny, 1, 1}).expand({1, na, ny, nx, 1});
    auto xv = torch::arange(nx, opts).view({1, 1, 1, nx, 1}).expand({1, na, ny, nx, 1});
    auto grid = torch::cat({xv, yv}, 4) - 0.5;
    auto anchor_grid = (anchors[i] * stride[i]).to(opts).view({1, na, 1, 1, 2});
    auto y = x.sigmoid();
    auto xy = (y.slice(4, 0, 2) * 2 + grid) * stride[i];
    auto wh = (y.slice(4, 2, 4) * 2).pow(2) * anchor_grid;
    z.push_back(torch::cat({xy, wh, y.slice(4, 4)}, 4).view({bs, na * ny * nx, no}));
  }
  return torch::cat(z, 1);
}

// --- the model ----------------------------------------------------------------------------

namespace {

std::vector<std::vector<double>> anchor_rows(const LayerSpec& spec) {
  TORCH_CHECK(spec.args.size() >= 3 && spec.args[1].kind == Arg::Kind::List, "model.", spec.index,
              " Detect: expected args [nc, anchors, channels]");
  std::vector<std::vector<double>> rows;
  for (auto& level : spec.args[1].items) {
    std::vector<double> row;
    for (auto& v : level.items) row.push_back(v.number);
    rows.push_back(std::move(row));
  }
  return rows;
}

Layer make_layer(const LayerSpec& spec, const Activation& act) {
  if (spec.module == "Detect") {
    std::vector<int64_t> ch;
    for (auto& c : spec.args[2].items) ch.push_back(static_cast<int64_t>(c.number));
    return std::make_shared<DetectImpl>(static_cast<int64_t>(spec.args[0].number),
                                        anchor_rows(spec), ch);
  }
  if (spec.repeats <= 1) return make_block(spec, act);
  std::vector<Layer> copies;
  for (int i = 0; i < spec.repeats; ++i) copies.push_back(make_block(spec, act));
  return std::make_shared<SequentialImpl>(std::move(copies));
}

bool uses_default_act(const LayerSpec& spec) {
  // Every block except these holds a Conv with the shared default activation.
  return spec.module != "Concat" && spec.module != "nn.Upsample" && spec.module != "Detect" &&
         spec.module != "nn.Identity";
}

}  // namespace

YoloModelImpl::YoloModelImpl(const ModelSpec& spec) : spec_(spec), in_channels_(spec.in_channels) {
  act_.kind = spec.activation.kind;
  act_.slope = spec.activation.slope;
  TORCH_CHECK(!spec.layers.empty(), "model has no layers");
  model_ = register_module("model", torch::nn::ModuleList());
  save_.assign(spec.layers.size(), false);
  for (const auto& ls : spec.layers) {
    auto layer = make_layer(ls, act_);
    model_->push_back(layer);
    layers_.push_back(layer);
    from_.push_back(ls.from);
    for (int f : ls.from) {
      if (f >= 0) save_.at(static_cast<size_t>(f)) = true;
    }
    default_act_used_ = default_act_used_ || uses_default_act(ls);
  }
  detect_ = std::dynamic_pointer_cast<DetectImpl>(layers_.back());
  TORCH_CHECK(detect_ != nullptr, "the last layer must be Detect, got ", spec.layers.back().module);

  // Stride probe: a 256x256 zero image in training mode, before BatchNorm gets its final eps and
  // momentum — so every running_var becomes 0.9 and num_batches_tracked 1, as in the reference.
  constexpr int64_t probe = 256;
  train(true);
  std::vector<torch::Tensor> raw;
  double macs = 0;
  {
    torch::NoGradGuard no_grad;
    FlopCounter counter(&macs);
    raw = run(torch::zeros({1, in_channels_, probe, probe}));
  }
  const double to_640 = 2.0 * (640.0 / probe) * (640.0 / probe) / 1e9;
  gflops_640_ = macs * to_640;
  for (auto& m : layer_gflops_640_) m *= to_640;
  auto& d = *detect_;
  d.stride.clear();
  for (auto& r : raw)
    d.stride.push_back(static_cast<double>(probe) / static_cast<double>(r.size(2)));
  {
    torch::NoGradGuard no_grad;
    auto s = torch::tensor(std::vector<float>(d.stride.begin(), d.stride.end())).view({-1, 1, 1});
    d.anchors.div_(s);
    // Anchors must grow with stride; flip the level order if the config lists them reversed.
    auto area = d.anchors.prod(-1).mean(-1).view(-1);
    auto da = (area[-1] - area[0]).item<double>();
    auto ds = d.stride.back() - d.stride.front();
    if (da != 0 && (da > 0) != (ds > 0)) d.anchors.copy_(d.anchors.flip(0));
    // Detect bias priors: ~8 objects per 640 image per level, classes near 0.6 / nc.
    for (int64_t i = 0; i < d.nl; ++i) {
      auto b = d.m[i]->as<torch::nn::Conv2d>()->bias.view({d.na, -1});
      b.select(1, 4).add_(std::log(8.0 / std::pow(640.0 / d.stride[i], 2)));
      b.slice(1, 5, 5 + d.nc).add_(std::log(0.6 / (static_cast<double>(d.nc) - 0.99999)));
    }
  }
  for (auto& module : modules(false)) {
    if (auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(module)) {
      bn->options.eps(1e-3);
      bn->options.momentum(0.03);
    }
  }
}

size_t YoloModelImpl::first_trainable_layer() const {
  for (size_t i = 0; i < layers_.size(); ++i)
    for (const auto& p : model_->ptr(i)->parameters())
      if (p.requires_grad()) return i;
  return layers_.size();
}

std::vector<torch::Tensor> YoloModelImpl::run(const torch::Tensor& input) {
  std::vector<torch::Tensor> saved(layers_.size());
  torch::Tensor x = input;
  const size_t last = layers_.size() - 1;
  // Frozen layers before the first trainable one need no autograd graph: nothing upstream of a
  // trainable parameter is differentiated (the input never requires a gradient here).
  const size_t no_grad_until =
      torch::GradMode::is_enabled() && !input.requires_grad() ? first_trainable_layer() : 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    std::optional<torch::NoGradGuard> no_grad;
    if (i < no_grad_until) no_grad.emplace();
    // The layer's parameter prefix names its scope for the step profile (train/profile.h); the
    // name is built only while a profiler listens.
    RECORD_USER_SCOPE("model." + std::to_string(i));
    std::vector<torch::Tensor> inputs;
    inputs.reserve(from_[i].size());
    for (int f : from_[i]) inputs.push_back(f < 0 ? x : saved[static_cast<size_t>(f)]);
    // While the build's profiling pass counts, note each layer's share (in MACs for now).
    const double before = FlopCounter::sink != nullptr ? *FlopCounter::sink : 0;
    auto note = [&] {
      if (FlopCounter::sink == nullptr) return;
      layer_gflops_640_.resize(layers_.size(), 0);
      layer_gflops_640_[i] = *FlopCounter::sink - before;
    };
    if (i == last) {
      auto out = detect_->forward_levels(inputs);
      note();
      return out;
    }
    x = layers_[i]->forward_many(inputs);
    note();
    if (save_[i]) saved[i] = x;
  }
  return {};
}

ForwardOutput YoloModelImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == in_channels_, "input must be (batch, ", in_channels_,
              ", height, width), got ", x.sizes());
  ForwardOutput out;
  out.raw = run(x);
  // Under autocast the head's convolutions give bf16/fp16: the loss and the box decoding (pixel
  // coordinates need more than 8 mantissa bits) run on fp32 predictions.
  for (auto& r : out.raw)
    if (r.scalar_type() != torch::kFloat) r = r.to(torch::kFloat);
  if (!is_training()) out.decoded = detect_->decode(out.raw);
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> YoloModelImpl::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : named_modules()) {
    const auto prefix = item.key().empty() ? std::string() : item.key() + ".";
    for (const auto& p : item.value()->named_parameters(false))
      out.emplace_back(prefix + p.key(), p.value());
    for (const auto& b : item.value()->named_buffers(false))
      out.emplace_back(prefix + b.key(), b.value());
  }
  return out;
}

std::vector<std::pair<std::string, bool>> YoloModelImpl::state_kinds() const {
  std::vector<std::pair<std::string, bool>> out;
  for (const auto& item : named_modules()) {
    const auto prefix = item.key().empty() ? std::string() : item.key() + ".";
    for (const auto& p : item.value()->named_parameters(false))
      out.emplace_back(prefix + p.key(), true);
    for (const auto& b : item.value()->named_buffers(false))
      out.emplace_back(prefix + b.key(), false);
  }
  return out;
}

int64_t YoloModelImpl::module_count() const {
  // The reference shares one activation instance across all default Convs: it counts once.
  return 1 + static_cast<int64_t>(modules(false).size()) + (default_act_used_ ? 1 : 0);
}

void YoloModelImpl::fuse() {
  for (auto& layer : layers_) layer->fuse();
  fused_ = true;
}

std::shared_ptr<YoloModelImpl> build_model(const ModelSpec& spec) {
  return std::make_shared<YoloModelImpl>(spec);
}

std::shared_ptr<YoloModelImpl> clone_model(const YoloModelImpl& model) {
  TORCH_CHECK(!model.fused(), "cannot clone a fused model");
  auto copy = build_model(model.spec());
  auto device = model.detect().anchors.device();
  copy->to(device);
  torch::NoGradGuard no_grad;
  auto src = model.state();
  auto dst = copy->state();
  for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_(src[i].second);
  for (size_t i = 0; i < dst.size(); ++i) {
    if (dst[i].second.requires_grad() != src[i].second.requires_grad())
      dst[i].second.set_requires_grad(src[i].second.requires_grad());
  }
  copy->eval();
  return copy;
}

}  // namespace yolo5
