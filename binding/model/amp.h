// Mixed precision: the modes, an autocast guard that compiles against LibTorch 1.13 and 2.x, the
// CPU's bf16 hardware as cpuid reports it, and the reference's AMP self-check (the same input
// through fp32 and autocast must give the same boxes within a tolerance).
#pragma once
#include <string>

#include "model/yolo.h"

namespace yolo5 {

// off: fp32. bf16: autocast to bfloat16 (CPU, or CUDA). fp16: autocast to float16 (CUDA; the
// trainer pairs it with a gradient scaler). Weights, buffers and the loss stay fp32 in every mode.
enum class AmpMode { Off, BF16, FP16 };

// "off", "bf16", "fp16" → the mode; anything else throws std::invalid_argument.
AmpMode amp_mode(const std::string& name);
const char* amp_name(AmpMode mode);

// Autocast on `device`'s type in the mode's dtype for the guard's lifetime (nothing with Off);
// the previous state (enabled, dtype) comes back at the end, and the cast cache is cleared when
// the outermost autocast region ends, as torch.autocast does.
class AutocastGuard {
 public:
  AutocastGuard(AmpMode mode, const c10::Device& device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType type_ = c10::DeviceType::CPU;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

// What cpuid (and the OS's saved register state) says about bf16 arithmetic on this CPU.
struct CpuFeatures {
  bool avx512f = false;      // AVX-512 Foundation, with the OS saving its registers
  bool avx512_bf16 = false;  // AVX512_BF16 (VDPBF16PS): Cooper Lake, Zen 4, Sapphire Rapids
  bool amx_bf16 = false;     // AMX-BF16 tiles (Sapphire Rapids), with the OS saving tile state
  bool bf16() const { return avx512_bf16 || amx_bf16; }
};
CpuFeatures cpu_features();

// The self-check: the model in eval mode on `x` (bs, 3, h, w) in fp32 and under `mode`; the
// largest |Δ| of the decoded boxes' x, y, w, h divided by the input's width/height (xywhn), and
// whether the AMP output is finite. The model's mode (train/eval) is restored.
struct AmpCheck {
  double max_xywhn_diff = 0;
  bool finite = true;
  int64_t rows = 0;
};
AmpCheck amp_self_check(YoloModelImpl& model, const torch::Tensor& x, AmpMode mode);

}  // namespace yolo5
