// The YOLOv5 building blocks. Member names are the PyTorch names (`conv`, `bn`, `cv1`, `m`, …):
// they become the state-dict keys that checkpoints, freezing and parity tests rely on.
#pragma once
#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/spec.h"

namespace yolo5 {

// The activation every default Conv shares (the reference's class-level default).
struct Activation {
  std::string kind = "SiLU";
  double slope = 0.01;
  torch::Tensor operator()(const torch::Tensor& x) const;
  void apply_(torch::Tensor& x) const;  // in place (only where no autograd graph needs x)
};

// Counts multiply-accumulates while a profiling forward runs (null otherwise).
struct FlopCounter {
  static thread_local double* sink;
  explicit FlopCounter(double* target) { sink = target; }
  ~FlopCounter() { sink = nullptr; }
};
// Profiling counts as the reference's summary does: a convolution costs in/groups·k·k (+1 with a
// bias) per output element, an affine BatchNorm 4 per element; activations, pooling, upsampling 0.
torch::Tensor counted(torch::nn::Conv2d& conv, const torch::Tensor& x);
torch::Tensor counted(torch::nn::BatchNorm2d& bn, const torch::Tensor& x);
void count_flops(torch::nn::BatchNorm2d& bn, const torch::Tensor& x);

// Base of every layer in `model.{i}`: one input, or a list for Concat.
class LayerImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  virtual torch::Tensor forward_many(const std::vector<torch::Tensor>& xs);
  // Folds BatchNorm into the preceding convolution (inference only); recurses into children.
  virtual void fuse();
};
using Layer = std::shared_ptr<LayerImpl>;

struct ConvOptions {
  int64_t c1 = 0, c2 = 0;
  std::array<int64_t, 2> k{1, 1}, s{1, 1};
  std::optional<std::array<int64_t, 2>> p;  // None = autopad
  int64_t g = 1, d = 1;
  bool act = true;
};

// Conv2d (no bias) → BatchNorm2d → activation.
class ConvImpl : public LayerImpl {
 public:
  ConvImpl(const ConvOptions& o, const Activation& act);
  torch::Tensor forward(const torch::Tensor& x) override;
  void fuse() override;
  bool fused() const { return fused_; }

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};

 private:
  Activation act_;
  bool use_act_;
  bool fused_ = false;
};

// Applies its children "0", "1", … in order (PyTorch's nn.Sequential names).
class SequentialImpl : public LayerImpl {
 public:
  explicit SequentialImpl(std::vector<Layer> items);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  std::vector<Layer> items_;
};

class IdentityImpl : public LayerImpl {
 public:
  torch::Tensor forward(const torch::Tensor& x) override { return x; }
};

class BottleneckImpl : public LayerImpl {
 public:
  BottleneckImpl(int64_t c1, int64_t c2, bool shortcut, int64_t g, double e, const Activation& act);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  std::shared_ptr<ConvImpl> cv1_, cv2_;
  bool add_;
};

class CrossConvImpl : public LayerImpl {
 public:
  CrossConvImpl(int64_t c1, int64_t c2, int64_t k, int64_t s, int64_t g, double e, bool shortcut,
                const Activation& act);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  std::shared_ptr<ConvImpl> cv1_, cv2_;
  bool add_;
};

class GhostConvImpl : public LayerImpl {
 public:
  GhostConvImpl(int64_t c1, int64_t c2, int64_t k, int64_t s, int64_t g, bool act,
                const Activation& activation);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  std::shared_ptr<ConvImpl> cv1_, cv2_;
};

class GhostBottleneckImpl : public LayerImpl {
 public:
  GhostBottleneckImpl(int64_t c1, int64_t c2, int64_t k, int64_t s, const Activation& act);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  Layer conv_, shortcut_;
};

// C3 and its variants differ only in the blocks of `m`.
enum class C3Kind { Bottleneck, Cross, Ghost };

class C3Impl : public LayerImpl {
 public:
  C3Impl(int64_t c1, int64_t c2, int64_t n, bool shortcut, int64_t g, double e, C3Kind kind,
         const Activation& act);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  std::shared_ptr<ConvImpl> cv1_, cv2_, cv3_;
  Layer m_;
};

class BottleneckCSPImpl : public LayerImpl {
 public:
  BottleneckCSPImpl(int64_t c1, int64_t c2, int64_t n, bool shortcut, int64_t g, double e,
                    const Activation& act);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  std::shared_ptr<ConvImpl> cv1_, cv4_;
  torch::nn::Conv2d cv2_{nullptr}, cv3_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
  Layer m_;
};

class SPPImpl : public LayerImpl {
 public:
  SPPImpl(int64_t c1, int64_t c2, const std::vector<int64_t>& ks, const Activation& act);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  std::shared_ptr<ConvImpl> cv1_, cv2_;
  std::vector<torch::nn::MaxPool2d> pools_;
};

class SPPFImpl : public LayerImpl {
 public:
  SPPFImpl(int64_t c1, int64_t c2, int64_t k, const Activation& act);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  std::shared_ptr<ConvImpl> cv1_, cv2_;
  torch::nn::MaxPool2d m_{nullptr};
};

class FocusImpl : public LayerImpl {
 public:
  FocusImpl(const ConvOptions& o, const Activation& act);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  std::shared_ptr<ConvImpl> conv_;
};

class ConcatImpl : public LayerImpl {
 public:
  explicit ConcatImpl(int64_t dim) : dim_(dim) {}
  torch::Tensor forward(const torch::Tensor& x) override { return x; }
  torch::Tensor forward_many(const std::vector<torch::Tensor>& xs) override;

 private:
  int64_t dim_;
};

class UpsampleImpl : public LayerImpl {
 public:
  UpsampleImpl(double scale, std::string mode) : scale_(scale), mode_(std::move(mode)) {}
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  double scale_;
  std::string mode_;
};

// Builds one row's module (before any repeat wrapping). Throws std::invalid_argument on bad args.
Layer make_block(const LayerSpec& spec, const Activation& act);

}  // namespace yolo5
