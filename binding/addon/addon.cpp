// Registration of the native surface. lib/native.ts is its only user and types it.
#include <napi.h>
#include <torch/version.h>

#include <chrono>
#include <cstdlib>
#include <fstream>

#ifndef _WIN32
#include <dlfcn.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef YOLO5_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "addon/convert.h"
#include "addon/dist_wrap.h"
#include "addon/lifetime.h"
#include "addon/model_wrap.h"
#include "addon/worker.h"
#include "data/jpeg.h"
#include "kernels/bn_act.h"
#include "model/amp.h"
#include "train/scaler.h"

namespace yolo5 {
namespace {

Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("available", torch::cuda::is_available());
  o.Set("deviceCount", static_cast<double>(torch::cuda::device_count()));
  return o;
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1)
    throw Napi::TypeError::New(info.Env(), "setThreads(n): n must be an integer >= 1");
  const int n = info[0].As<Napi::Number>().Int32Value();
  at::set_num_threads(n);
#ifdef _OPENMP
  // The addon's own at::parallel_for regions run on the OpenMP runtime it links, which is not
  // always LibTorch's (a Python torch bundles its own libgomp).
  omp_set_num_threads(n);
#endif
  return info.Env().Undefined();
}

// cpuFeatures() → { avx512f, avx512bf16, amxbf16, bf16 }: what the CPU (and the OS) offer for
// bfloat16 arithmetic, from cpuid; `--amp auto` turns bf16 on only where `bf16` is true.
Napi::Value CpuFeaturesOf(const Napi::CallbackInfo& info) {
  const auto f = cpu_features();
  auto o = Napi::Object::New(info.Env());
  o.Set("avx512f", f.avx512f);
  o.Set("avx512bf16", f.avx512_bf16);
  o.Set("amxbf16", f.amx_bf16);
  o.Set("bf16", f.bf16());
  return o;
}

// cudaMemory(device, reset?) → { allocated, peak, reserved } bytes of the CUDA caching allocator
// on that device (peak = torch.cuda.max_memory_allocated); reset: start a new peak. Without a
// CUDA LibTorch: an Error.
Napi::Value CudaMemory(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(env, "cudaMemory(device: number, reset?: boolean)");
#ifdef YOLO5_WITH_CUDA
  const int device = info[0].As<Napi::Number>().Int32Value();
  TORCH_CHECK(device >= 0 && device < static_cast<int>(torch::cuda::device_count()),
              "cudaMemory: no CUDA device ", device);
  namespace alloc = c10::cuda::CUDACachingAllocator;
  const auto stats = alloc::getDeviceStats(device);
  auto o = Napi::Object::New(env);
  // Index 0 of each statistic is the aggregate over pool kinds (StatType::AGGREGATE).
  o.Set("allocated", static_cast<double>(stats.allocated_bytes[0].current));
  o.Set("peak", static_cast<double>(stats.allocated_bytes[0].peak));
  o.Set("reserved", static_cast<double>(stats.reserved_bytes[0].current));
  if (info.Length() > 1 && info[1].ToBoolean().Value()) alloc::resetPeakStats(device);
  return o;
#else
  throw Napi::Error::New(env, "cudaMemory: this addon was built against a CPU LibTorch");
#endif
}

// cudnnBenchmark([enabled]) → cuDNN's benchmark mode (each convolution shape picks its fastest
// algorithm on first use), as torch.backends.cudnn.benchmark.
Napi::Value CudnnBenchmark(const Napi::CallbackInfo& info) {
  if (info.Length() > 0) {
    if (!info[0].IsBoolean())
      throw Napi::TypeError::New(info.Env(), "cudnnBenchmark([enabled]): a boolean");
    at::globalContext().setBenchmarkCuDNN(info[0].As<Napi::Boolean>().Value());
  }
  return Napi::Boolean::New(info.Env(), at::globalContext().benchmarkCuDNN());
}

// gradScalerTrace({ initScale, growth, backoff, interval }, grads: Float32Array[], foundInf:
// boolean[])
//   → { finite, unscaled: Float32Array[], scales: number[] }: the fp16 loss scaler on CPU tensors
// (for tests): `grads` unscaled as before an optimizer step, then one scale update per flag.
Napi::Value GradScalerTrace(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 3 || !info[1].IsArray() || !info[2].IsArray())
    throw Napi::TypeError::New(env, "gradScalerTrace(options, grads, foundInf)");
  Fields o(info[0], "gradScalerTrace options");
  GradScalerOptions so;
  so.init_scale = o.number("initScale");
  so.growth = o.number("growth");
  so.backoff = o.number("backoff");
  so.interval = static_cast<int64_t>(o.number("interval"));
  GradScaler scaler(so, torch::kCPU);
  std::vector<torch::Tensor> params;
  auto grads = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < grads.Length(); ++i) {
    auto h = to_host_array(grads.Get(i), "grads[i]");
    if (h.dtype != c10::kFloat) throw Napi::TypeError::New(env, "grads[i] must be a Float32Array");
    const auto n = static_cast<int64_t>(h.length);
    auto p = torch::zeros({n});
    p.mutable_grad() = torch::from_blob(h.data, {n}, torch::kFloat).clone();
    params.push_back(p);
  }
  auto result = Napi::Object::New(env);
  result.Set("finite", scaler.unscale(params));
  auto unscaled = Napi::Array::New(env, params.size());
  for (uint32_t i = 0; i < params.size(); ++i)
    unscaled.Set(i, to_typed_array(env, params[i].grad()));
  result.Set("unscaled", unscaled);
  auto flags = info[2].As<Napi::Array>();
  auto scales = Napi::Array::New(env, flags.Length());
  for (uint32_t i = 0; i < flags.Length(); ++i) {
    scaler.update(flags.Get(i).ToBoolean().Value());
    scales.Set(i, scaler.scale_value());
  }
  result.Set("scales", scales);
  return result;
}

// fusedBatchNorm([enabled]) → whether Conv blocks use the fused BatchNorm + SiLU CPU kernel.
Napi::Value FusedBatchNorm(const Napi::CallbackInfo& info) {
  if (info.Length() > 0) {
    if (!info[0].IsBoolean())
      throw Napi::TypeError::New(info.Env(),
                                 "fusedBatchNorm([enabled]): enabled must be a boolean");
    set_fused_batch_norm(info[0].As<Napi::Boolean>().Value());
  }
  return Napi::Boolean::New(info.Env(), fused_batch_norm());
}

// loadTensorFile(path) → Promise<[{ name, shape, dtype, data }]>: a plain dict of tensors saved by
// torch.save, read with LibTorch's own unpickler (no code runs; it only rebuilds tensors).
Napi::Value LoadTensorFile(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 1 || !info[0].IsString())
    throw Napi::TypeError::New(env, "loadTensorFile(path)");
  auto path = info[0].As<Napi::String>().Utf8Value();
  auto entries = std::make_shared<std::vector<std::pair<std::string, torch::Tensor>>>();
  return TaskWorker::Queue(
      env,
      [path, entries] {
        std::ifstream in(path, std::ios::binary);
        if (!in) throw std::runtime_error(path + ": cannot open");
        std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
        auto value = torch::pickle_load(bytes);
        if (!value.isGenericDict()) throw std::runtime_error(path + ": not a dict of tensors");
        for (const auto& item : value.toGenericDict()) {
          if (!item.key().isString() || !item.value().isTensor()) continue;
          entries->emplace_back(item.key().toStringRef(), item.value().toTensor());
        }
      },
      [entries](Napi::Env env) -> Napi::Value {
        auto out = Napi::Array::New(env, entries->size());
        for (size_t i = 0; i < entries->size(); ++i) {
          auto o = Napi::Object::New(env);
          o.Set("name", (*entries)[i].first);
          o.Set("shape", from_shape(env, (*entries)[i].second.sizes()));
          o.Set("dtype", dtype_name((*entries)[i].second.scalar_type()));
          o.Set("data", to_typed_array(env, (*entries)[i].second));
          out.Set(i, o);
        }
        return out;
      },
      "yolo5.loadTensorFile");
}

// setJpegLibrary(path) → "" when loaded, else why not (the built-in decoder stays in use).
Napi::Value SetJpegLibrary(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsString())
    throw Napi::TypeError::New(info.Env(), "setJpegLibrary(path)");
  return Napi::String::New(info.Env(), load_turbojpeg(info[0].As<Napi::String>().Utf8Value()));
}

// matmulGflops(n, repeats) → measured float32 GFLOP/s of an n×n matrix product on this machine
// with the current threads (the benchmarks' yardstick). Synchronous: a fraction of a second.
Napi::Value MatmulGflops(const Napi::CallbackInfo& info) {
  const int64_t n =
      info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int64Value() : 1024;
  const int reps =
      info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 10;
  return guarded(info.Env(), [&]() -> Napi::Value {
    torch::NoGradGuard no_grad;
    auto a = torch::randn({n, n}), b = torch::randn({n, n});
    auto c = torch::mm(a, b);  // warm-up
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) c = torch::mm(a, b);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return Napi::Number::New(info.Env(), 2.0 * n * n * n * reps / s / 1e9);
  });
}

// buildInfo() → what this binary was compiled against (for the prebuild manifest and doctor).
Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("libtorch", TORCH_VERSION);
#ifdef _GLIBCXX_USE_CXX11_ABI
  o.Set("cxx11abi", _GLIBCXX_USE_CXX11_ABI == 1);
#endif
  o.Set("napi", NAPI_VERSION);
  // Whether the CUDA half of LibTorch is loaded into this process (linked with --no-as-needed).
  bool cuda_linked = false;
#ifndef _WIN32
  if (void* h = dlopen("libtorch_cuda.so", RTLD_NOW | RTLD_NOLOAD)) {
    cuda_linked = true;
    dlclose(h);
  }
#endif
  o.Set("cudaLinked", cuda_linked);
#ifndef _WIN32
  // Where the dynamic linker found LibTorch for this process (its CPU library).
  Dl_info where{};
  if (dladdr(reinterpret_cast<void*>(&at::get_num_threads), &where) != 0 &&
      where.dli_fname != nullptr)
    o.Set("libtorchFile", where.dli_fname);
#endif
  return o;
}

// externalMemory() → the native bytes this addon has told V8 about, over all live objects (not
// V8's whole external total: that also counts Node's buffers, which a GC may free at any moment).
Napi::Value ExternalMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Lifetime::total_reported()));
}

Napi::Value JpegLibrary(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), turbojpeg_path());
}

// distInfo() → whether this build has distributed training (Gloo) and NCCL.
Napi::Value DistInfo(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("available", dist_available());
  o.Set("nccl", nccl_available());
  return o;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#if defined(__GLIBC__)
  // Loader and OpenMP threads each get a malloc arena by default; image buffers freed in one and
  // allocated in another fragment them and the resident size creeps up epoch after epoch
  // (0.84 → 1.39 GB over 10 epochs of yolov5n at 256 px). Two arenas keep it flat.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
#endif
  auto ctor = ModelWrap::Define(env);
  env.SetInstanceData(new Napi::FunctionReference(Napi::Persistent(ctor)));
  exports.Set("NativeModel", ctor);
  exports.Set("NativeTrainer", DefineTrainer(env));
  exports.Set("NativeProcessGroup", DefineProcessGroup(env));
  exports.Set("distInfo", Napi::Function::New<DistInfo>(env, "distInfo"));
  exports.Set("createModel", Napi::Function::New<ModelWrap::Create>(env, "createModel"));
  exports.Set("libtorchVersion", Napi::String::New(env, TORCH_VERSION));
  exports.Set("cudaInfo", Napi::Function::New<CudaInfo>(env, "cudaInfo"));
  exports.Set("getThreads", Napi::Function::New<GetThreads>(env, "getThreads"));
  exports.Set("setThreads", Napi::Function::New<SetThreads>(env, "setThreads"));
  exports.Set("cpuFeatures", Napi::Function::New<CpuFeaturesOf>(env, "cpuFeatures"));
  exports.Set("cudaMemory", Napi::Function::New<CudaMemory>(env, "cudaMemory"));
  exports.Set("cudnnBenchmark", Napi::Function::New<CudnnBenchmark>(env, "cudnnBenchmark"));
  exports.Set("gradScalerTrace", Napi::Function::New<GradScalerTrace>(env, "gradScalerTrace"));
  exports.Set("fusedBatchNorm", Napi::Function::New<FusedBatchNorm>(env, "fusedBatchNorm"));
  exports.Set("setJpegLibrary", Napi::Function::New<SetJpegLibrary>(env, "setJpegLibrary"));
  exports.Set("matmulGflops", Napi::Function::New<MatmulGflops>(env, "matmulGflops"));
  exports.Set("buildInfo", Napi::Function::New<BuildInfo>(env, "buildInfo"));
  exports.Set("jpegLibrary", Napi::Function::New<JpegLibrary>(env, "jpegLibrary"));
  exports.Set("externalMemory", Napi::Function::New<ExternalMemory>(env, "externalMemory"));
  exports.Set("imageInfo", Napi::Function::New<ImageInfo>(env, "imageInfo"));
  exports.Set("drawDetections", Napi::Function::New<DrawDetections>(env, "drawDetections"));
  exports.Set("loadTensorFile", Napi::Function::New<LoadTensorFile>(env, "loadTensorFile"));
  return exports;
}

}  // namespace yolo5

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  return yolo5::Init(env, exports);
}
NODE_API_MODULE(yolo5, InitAddon)
