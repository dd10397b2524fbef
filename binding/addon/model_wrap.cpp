#include "addon/model_wrap.h"

#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "addon/convert.h"
#include "addon/worker.h"

namespace yolo5 {

namespace {

Napi::FunctionReference* constructor_ref(Napi::Env env) {
  return env.GetInstanceData<Napi::FunctionReference>();
}

Napi::Object tensor_object(Napi::Env env, const torch::Tensor& t) {
  auto o = Napi::Object::New(env);
  o.Set("shape", from_shape(env, t.sizes()));
  o.Set("data", to_typed_array(env, t));
  return o;
}

}  // namespace

Napi::Function ModelWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {
                         InstanceMethod<&ModelWrap::NamedParameters>("namedParameters"),
                         InstanceMethod<&ModelWrap::StateEntries>("stateEntries"),
                         InstanceMethod<&ModelWrap::SetRequiresGrad>("setRequiresGrad"),
                         InstanceMethod<&ModelWrap::Info>("info"),
                         InstanceMethod<&ModelWrap::Forward>("forward"),
                         InstanceMethod<&ModelWrap::LoadState>("loadState"),
                         InstanceMethod<&ModelWrap::GetState>("getState"),
                         InstanceMethod<&ModelWrap::Fuse>("fuse"),
                         InstanceMethod<&ModelWrap::Predict>("predict"),
                         InstanceMethod<&ModelWrap::Loss>("loss"),
                         InstanceMethod<&ModelWrap::Clone>("clone"),
                         InstanceMethod<&ModelWrap::To>("to"),
                     });
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw Napi::TypeError::New(info.Env(), "NativeModel is created by createModel(spec)");
  state_ = *info[0].As<Napi::External<std::shared_ptr<ModelState>>>().Data();
}

std::shared_ptr<ModelState> ModelWrap::StateOf(const Napi::Object& obj) {
  auto ctor = constructor_ref(obj.Env())->Value();
  if (!obj.InstanceOf(ctor)) throw Napi::TypeError::New(obj.Env(), "expected a NativeModel");
  return Unwrap(obj)->state_;
}

// clone() → Promise<NativeModel>: same spec, copied state (the EMA starts this way).
Napi::Value ModelWrap::Clone(const Napi::CallbackInfo& info) {
  auto state = state_;
  auto built = std::make_shared<std::shared_ptr<ModelState>>();
  return TaskWorker::Queue(
      info.Env(),
      [state, built] {
        std::lock_guard<std::mutex> lock(state->mutex);
        auto copy = std::make_shared<ModelState>();
        copy->model = clone_model(*state->model);
        *built = copy;
      },
      [built](Napi::Env env) -> Napi::Value {
        auto external = Napi::External<std::shared_ptr<ModelState>>::New(env, built.get());
        return constructor_ref(env)->New({external});
      },
      "yolo5.clone");
}

// to(device) → Promise<string>: moves every parameter and buffer ("cpu", "cuda", "cuda:1");
// resolves with the device now used. Asking for a CUDA device LibTorch cannot see is an error.
Napi::Value ModelWrap::To(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 1 || !info[0].IsString())
    throw Napi::TypeError::New(env,
                               "to(device): device must be a string such as 'cpu' or 'cuda:0'");
  auto name = info[0].As<Napi::String>().Utf8Value();
  auto state = state_;
  auto now = std::make_shared<std::string>();
  return TaskWorker::Queue(
      env,
      [state, name, now] {
        torch::Device device(name);
        if (device.is_cuda()) {
          TORCH_CHECK(torch::cuda::is_available(), "device ", name,
                      ": CUDA is not available to this LibTorch");
          TORCH_CHECK(!device.has_index() ||
                          static_cast<size_t>(device.index()) < torch::cuda::device_count(),
                      "device ", name, ": only ", torch::cuda::device_count(),
                      " CUDA device(s) found");
        }
        std::lock_guard<std::mutex> lock(state->mutex);
        state->model->to(device);
        *now = state->model->detect().anchors.device().str();
      },
      [now](Napi::Env env) -> Napi::Value { return Napi::String::New(env, *now); }, "yolo5.to");
}

Napi::Value ModelWrap::Create(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject())
    throw Napi::TypeError::New(env, "createModel(spec): spec must be an object");
  auto spec = std::make_shared<ModelSpec>(to_model_spec(info[0].As<Napi::Object>()));
  auto built = std::make_shared<std::shared_ptr<ModelState>>();
  return TaskWorker::Queue(
      env,
      [spec, built] {
        auto state = std::make_shared<ModelState>();
        state->model = build_model(*spec);
        state->model->eval();
        *built = state;
      },
      [built](Napi::Env env) -> Napi::Value {
        auto external = Napi::External<std::shared_ptr<ModelState>>::New(env, built.get());
        return constructor_ref(env)->New({external});
      },
      "yolo5.createModel");
}

Napi::Value ModelWrap::NamedParameters(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    std::lock_guard<std::mutex> lock(state_->mutex);
    auto params = state_->model->named_parameters(true);
    auto out = Napi::Array::New(env, params.size());
    uint32_t i = 0;
    for (const auto& p : params) {
      auto o = Napi::Object::New(env);
      o.Set("name", p.key());
      o.Set("shape", from_shape(env, p.value().sizes()));
      o.Set("requiresGrad", p.value().requires_grad());
      out.Set(i++, o);
    }
    return out;
  });
}

Napi::Value ModelWrap::StateEntries(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    std::lock_guard<std::mutex> lock(state_->mutex);
    auto state = state_->model->state();
    auto kinds = state_->model->state_kinds();
    auto out = Napi::Array::New(env, state.size());
    for (size_t i = 0; i < state.size(); ++i) {
      auto o = Napi::Object::New(env);
      o.Set("name", state[i].first);
      o.Set("shape", from_shape(env, state[i].second.sizes()));
      o.Set("kind", kinds[i].second ? "param" : "buffer");
      o.Set("dtype", dtype_name(state[i].second.scalar_type()));
      out.Set(i, o);
    }
    return out;
  });
}

// setRequiresGrad(names: string[], flag: boolean) → number of parameters changed.
Napi::Value ModelWrap::SetRequiresGrad(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 2 || !info[0].IsArray() || !info[1].IsBoolean())
    throw Napi::TypeError::New(env, "setRequiresGrad(names: string[], flag: boolean)");
  return guarded(env, [&]() -> Napi::Value {
    std::lock_guard<std::mutex> lock(state_->mutex);
    auto names = info[0].As<Napi::Array>();
    bool flag = info[1].As<Napi::Boolean>().Value();
    auto params = state_->model->named_parameters(true);
    uint32_t changed = 0;
    for (uint32_t i = 0; i < names.Length(); ++i) {
      auto name = names.Get(i).As<Napi::String>().Utf8Value();
      auto* p = params.find(name);
      if (p == nullptr) throw Napi::Error::New(env, "no parameter named " + name);
      p->set_requires_grad(flag);
      ++changed;
    }
    return Napi::Number::New(env, changed);
  });
}

Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    std::lock_guard<std::mutex> lock(state_->mutex);
    auto& m = *state_->model;
    double params = 0, grads = 0;
    for (const auto& p : m.parameters(true)) {
      params += static_cast<double>(p.numel());
      if (p.requires_grad()) grads += static_cast<double>(p.numel());
    }
    auto& d = m.detect();
    auto o = Napi::Object::New(env);
    o.Set("layers", Napi::Number::New(env, static_cast<double>(m.module_count())));
    o.Set("parameters", params);
    o.Set("gradients", grads);
    o.Set("gflops", m.gflops_640());
    auto layer_gflops = Napi::Array::New(env, m.layer_gflops_640().size());
    for (size_t i = 0; i < m.layer_gflops_640().size(); ++i)
      layer_gflops.Set(i, m.layer_gflops_640()[i]);
    o.Set("layerGflops", layer_gflops);
    o.Set("nc", Napi::Number::New(env, static_cast<double>(d.nc)));
    o.Set("inChannels", m.in_channels());
    o.Set("fused", m.fused());
    auto stride = Napi::Array::New(env, d.stride.size());
    for (size_t i = 0; i < d.stride.size(); ++i) stride.Set(i, d.stride[i]);
    o.Set("stride", stride);
    o.Set("anchors", tensor_object(env, d.anchors));
    return o;
  });
}

// forward(data, shape, { train?: boolean }) → Promise<{ output?: Tensor, raw: Tensor[] }>
Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2) throw Napi::TypeError::New(env, "forward(data, shape, options)");
  auto input = std::make_shared<HostArray>(to_host_array(info[0], "input"));
  auto shape = to_shape(info[1], "shape");
  bool train = false;
  if (info.Length() > 2 && info[2].IsObject()) {
    auto opts = info[2].As<Napi::Object>();
    train = opts.Get("train").ToBoolean().Value();
  }
  if (input->dtype != c10::kFloat) throw Napi::TypeError::New(env, "input must be a Float32Array");
  int64_t n = 1;
  for (auto s : shape) n *= s;
  if (shape.size() != 4 || static_cast<size_t>(n) != input->length)
    throw Napi::RangeError::New(
        env, "input holds " + std::to_string(input->length) +
                 " values, shape needs 4 sizes (batch, channels, height, width) with that product");
  auto state = state_;
  auto result = std::make_shared<ForwardOutput>();
  return TaskWorker::Queue(
      env,
      [state, input, shape, train, result] {
        std::lock_guard<std::mutex> lock(state->mutex);
        auto& model = *state->model;
        auto x =
            torch::from_blob(input->data, shape, torch::kFloat).to(model.detect().anchors.device());
        model.train(train);
        if (train) {
          *result = model.forward(x);
        } else {
          c10::InferenceMode guard;
          *result = model.forward(x);
        }
        model.eval();
      },
      [result](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        if (result->decoded.defined()) o.Set("output", tensor_object(env, result->decoded));
        auto raw = Napi::Array::New(env, result->raw.size());
        for (size_t i = 0; i < result->raw.size(); ++i)
          raw.Set(i, tensor_object(env, result->raw[i]));
        o.Set("raw", raw);
        return o;
      },
      "yolo5.forward");
}

// loadState([{ name, shape, data }]) → Promise<{ loaded, missing, unexpected, mismatched }>.
// Copies every entry whose name and shape match; the caller decides what a partial load means.
Napi::Value ModelWrap::LoadState(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 1 || !info[0].IsArray())
    throw Napi::TypeError::New(env, "loadState(entries)");
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
    std::shared_ptr<HostArray> data;
  };
  auto entries = std::make_shared<std::vector<Entry>>();
  auto arr = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    auto o = arr.Get(i).As<Napi::Object>();
    Entry e;
    e.name = o.Get("name").As<Napi::String>().Utf8Value();
    e.shape = to_shape(o.Get("shape"), "shape");
    e.data = std::make_shared<HostArray>(to_host_array(o.Get("data"), "data"));
    int64_t n = 1;
    for (auto s : e.shape) n *= s;
    if (static_cast<size_t>(n) != e.data->length)
      throw Napi::RangeError::New(env, e.name + ": data holds " + std::to_string(e.data->length) +
                                           " values for a shape of " + std::to_string(n));
    entries->push_back(std::move(e));
  }
  struct Report {
    uint32_t loaded = 0;
    std::vector<std::string> missing, unexpected, mismatched;
  };
  auto report = std::make_shared<Report>();
  auto state = state_;
  return TaskWorker::Queue(
      env,
      [state, entries, report] {
        std::lock_guard<std::mutex> lock(state->mutex);
        torch::NoGradGuard no_grad;
        std::unordered_map<std::string, torch::Tensor> targets;
        for (auto& kv : state->model->state()) targets.emplace(kv.first, kv.second);
        std::unordered_set<std::string> seen;
        for (auto& e : *entries) {
          auto it = targets.find(e.name);
          if (it == targets.end()) {
            report->unexpected.push_back(e.name);
            continue;
          }
          seen.insert(e.name);
          if (it->second.sizes() != c10::IntArrayRef(e.shape)) {
            report->mismatched.push_back(e.name);
            continue;
          }
          auto src = torch::from_blob(e.data->data, e.shape, e.data->dtype);
          it->second.copy_(src);
          ++report->loaded;
        }
        for (auto& kv : state->model->state()) {
          if (!seen.count(kv.first)) report->missing.push_back(kv.first);
        }
      },
      [report](Napi::Env env) -> Napi::Value {
        auto list = [&](const std::vector<std::string>& v) {
          auto a = Napi::Array::New(env, v.size());
          for (size_t i = 0; i < v.size(); ++i) a.Set(i, v[i]);
          return a;
        };
        auto o = Napi::Object::New(env);
        o.Set("loaded", report->loaded);
        o.Set("missing", list(report->missing));
        o.Set("unexpected", list(report->unexpected));
        o.Set("mismatched", list(report->mismatched));
        return o;
      },
      "yolo5.loadState");
}

// getState() → Promise<[{ name, shape, dtype, data }]> in state-dict order.
Napi::Value ModelWrap::GetState(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto copies = std::make_shared<std::vector<std::pair<std::string, torch::Tensor>>>();
  auto state = state_;
  return TaskWorker::Queue(
      env,
      [state, copies] {
        std::lock_guard<std::mutex> lock(state->mutex);
        for (auto& kv : state->model->state())
          copies->emplace_back(kv.first, kv.second.detach().to(torch::kCPU).clone());
      },
      [copies](Napi::Env env) -> Napi::Value {
        auto out = Napi::Array::New(env, copies->size());
        for (size_t i = 0; i < copies->size(); ++i) {
          auto o = tensor_object(env, (*copies)[i].second);
          o.Set("name", (*copies)[i].first);
          o.Set("dtype", dtype_name((*copies)[i].second.scalar_type()));
          out.Set(i, o);
        }
        return out;
      },
      "yolo5.getState");
}

Napi::Value ModelWrap::Fuse(const Napi::CallbackInfo& info) {
  auto state = state_;
  return TaskWorker::Queue(
      info.Env(),
      [state] {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->model->fuse();
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, "yolo5.fuse");
}

}  // namespace yolo5
