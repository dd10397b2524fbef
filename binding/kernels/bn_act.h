// BatchNorm2d followed by its activation in as few passes over memory as possible (CPU, float32
// or bfloat16 activations, computed in float32).
// Training statistics: one pass for the per-channel sums, one that normalises and activates; the
// backward pass reads the gradient and the BatchNorm input twice and recomputes the activation,
// so the BatchNorm output is never stored. Numerically the same layer as bn → act (double sums).
#pragma once
#include <torch/torch.h>

#include <vector>

namespace yolo5 {

enum class FusedAct { Identity, SiLU };

// bn(x) then act, as bn's mode says (training: batch statistics, running statistics and
// num_batches_tracked updated; eval: running statistics). Returns an undefined tensor where the
// fused kernel does not apply (not a CPU float32/bfloat16 4-d tensor, no affine or running
// statistics, eval mode with a gradient to compute): the caller then runs bn and act as usual.
// Without autograd the result may overwrite x when `x_is_temporary`. A bf16 x (autocast) is read
// and written as bf16 and computed in fp32; an fp16 one goes through an fp32 copy.
torch::Tensor batch_norm_act(torch::nn::BatchNorm2d& bn, const torch::Tensor& x, FusedAct act,
                             bool x_is_temporary);

// --sync-bn (SyncBatchNorm semantics): batch statistics over every rank's batch. The forward
// pass sums (Σx, Σx², count) over the ranks; the backward pass sums (Σgy, Σgy·(x − mean)) for
// the input gradient, while the weight and bias gradients stay local (the gradient all-reduce
// averages them). The training step installs a reducer for its thread (train/dist.h).
class ChannelSumsReducer {
 public:
  virtual ~ChannelSumsReducer() = default;
  // Replaces every value with its sum over the ranks (each rank passes the same length).
  virtual void sum(std::vector<double>& values) = 0;
};

// While alive, BatchNorm in training mode on this thread uses `reducer` (null: none).
class SyncBatchNormScope {
 public:
  explicit SyncBatchNormScope(ChannelSumsReducer* reducer);
  ~SyncBatchNormScope();
  SyncBatchNormScope(const SyncBatchNormScope&) = delete;
  SyncBatchNormScope& operator=(const SyncBatchNormScope&) = delete;

 private:
  ChannelSumsReducer* previous_;
};
// This thread's reducer, or null.
ChannelSumsReducer* sync_batch_norm();
// bn(x) in training mode with statistics over every rank (this thread's reducer), in plain
// tensor operations: where the fused kernel does not apply (CUDA, YOLO5_FUSED_BN=0).
torch::Tensor synced_batch_norm(torch::nn::BatchNorm2d& bn, const torch::Tensor& x);

// Process-wide switch (on by default): off, every call returns undefined, for comparisons.
void set_fused_batch_norm(bool enabled);
bool fused_batch_norm();

}  // namespace yolo5
