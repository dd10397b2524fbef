// BatchNorm2d followed by its activation in as few passes over memory as possible (CPU, float32).
// Training statistics: one pass for the per-channel sums, one that normalises and activates; the
// backward pass reads the gradient and the BatchNorm input twice and recomputes the activation,
// so the BatchNorm output is never stored. Numerically the same layer as bn → act (double sums).
#pragma once
#include <torch/torch.h>

namespace yolo5 {

enum class FusedAct { Identity, SiLU };

// bn(x) then act, as bn's mode says (training: batch statistics, running statistics and
// num_batches_tracked updated; eval: running statistics). Returns an undefined tensor where the
// fused kernel does not apply (not a CPU float32 4-d tensor, no affine or running statistics,
// eval mode with a gradient to compute): the caller then runs bn and act as usual. Without
// autograd the result may overwrite x when `x_is_temporary`. A bf16/fp16 x (autocast) is
// normalised in fp32 and the result returned in x's dtype.
torch::Tensor batch_norm_act(torch::nn::BatchNorm2d& bn, const torch::Tensor& x, FusedAct act,
                             bool x_is_temporary);

// Process-wide switch (on by default): off, every call returns undefined, for comparisons.
void set_fused_batch_norm(bool enabled);
bool fused_batch_norm();

}  // namespace yolo5
