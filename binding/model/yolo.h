// Detect and the whole model built from a resolved ModelSpec.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/common.h"

namespace yolo5 {

class DetectImpl : public LayerImpl {
 public:
  DetectImpl(int64_t nc, const std::vector<std::vector<double>>& anchors,
             const std::vector<int64_t>& ch);
  torch::Tensor forward(const torch::Tensor& x) override;
  // Raw head outputs per level: (bs, na, ny, nx, no).
  std::vector<torch::Tensor> forward_levels(const std::vector<torch::Tensor>& xs);
  // Boxes in input pixels: (bs, Σ na·ny·nx, no) as cx, cy, w, h, obj, cls…
  torch::Tensor decode(const std::vector<torch::Tensor>& raw);

  int64_t nc, no, nl, na;
  std::vector<double> stride;  // set by the model after its stride probe
  torch::Tensor anchors;       // (nl, na, 2), grid units after the build
  torch::nn::ModuleList m{nullptr};

 private:
  std::vector<torch::nn::Conv2d> convs_;
};

struct ForwardOutput {
  torch::Tensor decoded;           // only in eval mode
  std::vector<torch::Tensor> raw;  // always
};

class YoloModelImpl : public torch::nn::Module {
 public:
  explicit YoloModelImpl(const ModelSpec& spec);

  // Train mode gives raw levels only; eval mode also decodes.
  ForwardOutput forward(const torch::Tensor& x);
  DetectImpl& detect() { return *detect_; }
  const DetectImpl& detect() const { return *detect_; }
  const std::vector<Layer>& layers() const { return layers_; }

  // State dict in PyTorch order (per module: own parameters, own buffers, then children).
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  std::vector<std::pair<std::string, bool>> state_kinds() const;  // true = parameter

  int64_t module_count() const;
  double gflops_640() const { return gflops_640_; }
  // Per layer (model.{i}), the forward GFLOPs at 640×640 as gflops_640() counts them.
  const std::vector<double>& layer_gflops_640() const { return layer_gflops_640_; }
  int in_channels() const { return in_channels_; }
  void fuse();
  bool fused() const { return fused_; }
  const ModelSpec& spec() const { return spec_; }

 private:
  std::vector<torch::Tensor> run(const torch::Tensor& x);
  // The first layer with a trainable parameter (layers().size() if none).
  size_t first_trainable_layer() const;

  ModelSpec spec_;
  torch::nn::ModuleList model_{nullptr};
  std::vector<Layer> layers_;
  std::vector<std::vector<int>> from_;
  std::vector<bool> save_;
  std::shared_ptr<DetectImpl> detect_;
  Activation act_;
  bool default_act_used_ = false;
  int in_channels_ = 3;
  double gflops_640_ = 0;
  std::vector<double> layer_gflops_640_;
  bool fused_ = false;
};

std::shared_ptr<YoloModelImpl> build_model(const ModelSpec& spec);
// A new model from the same spec with a copy of every state tensor (on the same device).
std::shared_ptr<YoloModelImpl> clone_model(const YoloModelImpl& model);

}  // namespace yolo5
