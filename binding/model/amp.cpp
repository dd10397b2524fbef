#include "model/amp.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cmath>
#include <stdexcept>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define YOLO5_X86_CPUID 1
#endif

// LibTorch 2.4 generalised autocast to one API per device type and deprecated the CUDA- and
// CPU-specific calls that 1.13 (and 2.0–2.3) have: pick by version, so both compile warning-free.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define YOLO5_AUTOCAST_BY_DEVICE 1
#endif

namespace yolo5 {

namespace {

bool autocast_enabled(c10::DeviceType t) {
#ifdef YOLO5_AUTOCAST_BY_DEVICE
  return at::autocast::is_autocast_enabled(t);
#else
  return t == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(c10::DeviceType t, bool on) {
#ifdef YOLO5_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_enabled(t, on);
#else
  if (t == c10::DeviceType::CUDA)
    at::autocast::set_enabled(on);
  else
    at::autocast::set_cpu_enabled(on);
#endif
}

at::ScalarType autocast_dtype(c10::DeviceType t) {
#ifdef YOLO5_AUTOCAST_BY_DEVICE
  return at::autocast::get_autocast_dtype(t);
#else
  return t == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                    : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(c10::DeviceType t, at::ScalarType dtype) {
#ifdef YOLO5_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_dtype(t, dtype);
#else
  if (t == c10::DeviceType::CUDA)
    at::autocast::set_autocast_gpu_dtype(dtype);
  else
    at::autocast::set_autocast_cpu_dtype(dtype);
#endif
}

#ifdef YOLO5_X86_CPUID
// XCR0: which register states the OS saves on a context switch (AVX-512 and AMX need theirs).
uint64_t xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

}  // namespace

AmpMode amp_mode(const std::string& name) {
  if (name == "off") return AmpMode::Off;
  if (name == "bf16") return AmpMode::BF16;
  if (name == "fp16") return AmpMode::FP16;
  throw std::invalid_argument("expected \"off\", \"bf16\" or \"fp16\" but received \"" + name +
                              "\"");
}

const char* amp_name(AmpMode mode) {
  switch (mode) {
    case AmpMode::BF16:
      return "bf16";
    case AmpMode::FP16:
      return "fp16";
    default:
      return "off";
  }
}

AutocastGuard::AutocastGuard(AmpMode mode, const c10::Device& device) {
  if (mode == AmpMode::Off) return;
  TORCH_CHECK(device.is_cpu() || device.is_cuda(), "autocast runs on CPU or CUDA, not ", device);
  TORCH_CHECK(mode != AmpMode::FP16 || device.is_cuda(),
              "fp16 autocast needs a CUDA device (LibTorch's CPU autocast is bfloat16 only)");
  type_ = device.type();
  was_enabled_ = autocast_enabled(type_);
  was_dtype_ = autocast_dtype(type_);
  set_autocast_dtype(type_, mode == AmpMode::FP16 ? at::kHalf : at::kBFloat16);
  set_autocast_enabled(type_, true);
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // Casts of the weights are cached for one autocast region (a forward pass), then dropped.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(type_, was_enabled_);
  set_autocast_dtype(type_, was_dtype_);
}

CpuFeatures cpu_features() {
  CpuFeatures f;
#ifdef YOLO5_X86_CPUID
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return f;  // no OSXSAVE: no xgetbv
  const uint64_t x = xcr0();
  const bool zmm_saved = (x & 0xe6) == 0xe6;         // XMM, YMM, opmask, ZMM halves
  const bool tiles_saved = (x & (3ull << 17)) != 0;  // TILECFG, TILEDATA
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const unsigned max_subleaf = a;
  f.avx512f = zmm_saved && (b & (1u << 16));
  f.amx_bf16 = tiles_saved && (d & (1u << 22));
  if (max_subleaf >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d))
    f.avx512_bf16 = f.avx512f && (a & (1u << 5));
#endif
  return f;
}

AmpCheck amp_self_check(YoloModelImpl& model, const torch::Tensor& x, AmpMode mode) {
  const bool training = model.is_training();
  model.eval();
  AmpCheck r;
  try {
    torch::NoGradGuard no_grad;
    auto ref = model.forward(x).decoded;
    torch::Tensor amp;
    {
      AutocastGuard autocast(mode, x.device());
      amp = model.forward(x).decoded;
    }
    amp = amp.to(torch::kFloat);
    auto norm = torch::tensor({static_cast<float>(x.size(3)), static_cast<float>(x.size(2)),
                               static_cast<float>(x.size(3)), static_cast<float>(x.size(2))},
                              ref.options());
    auto a = amp.slice(2, 0, 4) / norm, b = ref.slice(2, 0, 4) / norm;
    r.finite = torch::isfinite(amp).all().item<bool>();
    r.max_xywhn_diff = r.finite ? (a - b).abs().max().item<double>() : INFINITY;
    r.rows = ref.size(1);
  } catch (...) {
    model.train(training);
    throw;
  }
  model.train(training);
  return r;
}

}  // namespace yolo5
