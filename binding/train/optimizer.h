// The optimizer as the reference builds it: three parameter groups of the trainable parameters
// (biases without decay, weights with decay, BatchNorm weights without decay), SGD with Nesterov
// momentum, Adam or AdamW (momentum as beta1), and its state saved and restored by parameter name.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/yolo.h"

namespace yolo5 {

enum class OptimizerKind { SGD, Adam, AdamW };

// "SGD", "Adam" or "AdamW"; anything else is an std::invalid_argument naming the choices.
OptimizerKind optimizer_kind(const std::string& name);
const char* optimizer_name(OptimizerKind kind);

// The parameter groups, in the reference's order (the order of `lrs` in the epoch stats).
enum ParamGroup : size_t { kBiases = 0, kWeights = 1, kBatchNormWeights = 2, kParamGroups = 3 };

// One buffer of a parameter's state: momentum_buffer (SGD); exp_avg, exp_avg_sq, step (Adam).
struct OptimizerBuffer {
  std::string name;  // the parameter's PyTorch name
  std::string key;
  torch::Tensor tensor;
};

class Optimizer {
 public:
  // Groups the model's trainable parameters (requires_grad now); throws when every one is frozen.
  Optimizer(YoloModelImpl& model, OptimizerKind kind, double lr, double momentum,
            double weight_decay);

  OptimizerKind kind() const { return kind_; }
  void set(size_t group, double lr, double momentum);
  double lr(size_t group) const;
  // Every trainable parameter, group by group (what gradient clipping sees, in this order).
  const std::vector<torch::Tensor>& parameters() const { return params_; }
  void step() { impl_->step(); }
  void zero_grad() { impl_->zero_grad(); }

  // Copies of the state, per parameter name; parameters without state yet are left out.
  std::vector<OptimizerBuffer> buffers() const;
  // Restores what `buffers` gave; names of parameters not trained now are skipped.
  void load_buffers(const std::vector<OptimizerBuffer>& buffers);
  // Bytes of optimizer state and gradients in host memory (for what V8 is told).
  int64_t host_bytes() const;

 private:
  OptimizerKind kind_;
  std::unique_ptr<torch::optim::Optimizer> impl_;
  std::vector<std::vector<std::string>> names_;  // parameter names per group
  std::vector<torch::Tensor> params_;
};

}  // namespace yolo5
