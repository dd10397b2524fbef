#include "addon/model_wrap.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "addon/convert.h"

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

// Runs `body` under the model's mutex and lists the model after it, also when it threw (a
// partial change is still what the model now is).
template <typename F>
void listing_after(ModelState& state, const PendingListing& listing, F&& body) {
  std::lock_guard<std::mutex> lock(state.mutex);
  try {
    body(*state.model);
  } catch (...) {
    *listing = list_model(*state.model);
    throw;
  }
  *listing = list_model(*state.model);
}

// A new NativeModel object around a state built in a worker.
Napi::Value wrap_new_state(Napi::Env env, std::shared_ptr<ModelState>& built,
                           ModelListing listing) {
  auto external = Napi::External<std::shared_ptr<ModelState>>::New(env, &built);
  auto obj = constructor_ref(env)->New({external});
  built->publish(env, std::move(listing));
  return obj;
}

}  // namespace

void ModelState::publish(Napi::Env env, ModelListing l) {
  if (life.disposed()) return;
  listing = std::move(l);
  life.report(env, listing.host_bytes);
}

Napi::Promise queue_on_models(Napi::Env env, const std::vector<std::shared_ptr<ModelState>>& states,
                              TaskWorker::Execute_ execute, TaskWorker::Resolve resolve,
                              const char* name, std::vector<PendingListing> listings,
                              TaskWorker::Done after) {
  // Each distinct model once (an ensemble may name one twice).
  std::vector<std::shared_ptr<ModelState>> distinct;
  for (auto& s : states)
    if (std::find(distinct.begin(), distinct.end(), s) == distinct.end()) distinct.push_back(s);
  for (auto& s : distinct) s->life.check(env);
  for (auto& s : distinct) s->life.begin(env);
  return TaskWorker::Queue(env, std::move(execute), std::move(resolve), name,
                           [distinct, states, listings, after](Napi::Env env) {
                             for (size_t i = 0; i < listings.size() && i < states.size(); ++i)
                               if (listings[i] && listings[i]->has_value())
                                 states[i]->publish(env, std::move(**listings[i]));
                             for (auto& s : distinct) s->life.end(env);
                             if (after) after(env);
                           });
}

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
                         InstanceMethod<&ModelWrap::AmpCheck>("ampCheck"),
                         InstanceMethod<&ModelWrap::Clone>("clone"),
                         InstanceMethod<&ModelWrap::To>("to"),
                         InstanceMethod<&ModelWrap::Dispose>("dispose"),
                         InstanceAccessor<&ModelWrap::Disposed>("disposed"),
                     });
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw Napi::TypeError::New(info.Env(), "NativeModel is created by createModel(spec)");
  state_ = *info[0].As<Napi::External<std::shared_ptr<ModelState>>>().Data();
  // The state outlives this call; a raw pointer keeps the release from owning its own state.
  state_->life.set_release([s = state_.get()] {
    s->model.reset();
    s->listing = ModelListing();
  });
}

// Collected without dispose(): the same, so that V8's count of native memory goes down.
ModelWrap::~ModelWrap() {
  if (state_) state_->life.dispose(Env());
}

std::shared_ptr<ModelState> ModelWrap::StateOf(const Napi::Object& obj) {
  auto ctor = constructor_ref(obj.Env())->Value();
  if (!obj.InstanceOf(ctor)) throw Napi::TypeError::New(obj.Env(), "expected a NativeModel");
  auto state = Unwrap(obj)->state_;
  state->life.check(obj.Env());
  return state;
}

// dispose(): no later call is accepted; the native memory is freed now, or when the calls in
// flight (and a trainer's epoch) have completed. Disposing twice is a no-op.
Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  state_->life.dispose(info.Env());
  return info.Env().Undefined();
}

Napi::Value ModelWrap::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), state_->life.disposed());
}

// clone() → Promise<NativeModel>: same spec, copied state (the EMA starts this way).
Napi::Value ModelWrap::Clone(const Napi::CallbackInfo& info) {
  auto state = state_;
  auto built = std::make_shared<std::shared_ptr<ModelState>>();
  auto listing = std::make_shared<ModelListing>();
  return queue_on_models(
      info.Env(), {state},
      [state, built, listing] {
        std::lock_guard<std::mutex> lock(state->mutex);
        auto copy = std::make_shared<ModelState>();
        copy->model = clone_model(*state->model);
        *listing = list_model(*copy->model);
        *built = copy;
      },
      [built, listing](Napi::Env env) -> Napi::Value {
        return wrap_new_state(env, *built, std::move(*listing));
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
  auto listing = std::make_shared<std::optional<ModelListing>>();
  return queue_on_models(
      env, {state},
      [state, name, now, listing] {
        torch::Device device(name);
        if (device.is_cuda()) {
          TORCH_CHECK(torch::cuda::is_available(), "device ", name,
                      ": CUDA is not available to this LibTorch");
          TORCH_CHECK(!device.has_index() ||
                          static_cast<size_t>(device.index()) < torch::cuda::device_count(),
                      "device ", name, ": only ", torch::cuda::device_count(),
                      " CUDA device(s) found");
        }
        listing_after(*state, listing, [&](YoloModelImpl& m) {
          m.to(device);
          *now = m.detect().anchors.device().str();
        });
      },
      [now](Napi::Env env) -> Napi::Value { return Napi::String::New(env, *now); }, "yolo5.to",
      {listing});
}

Napi::Value ModelWrap::Create(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1) throw Napi::TypeError::New(env, "createModel(spec)");
  auto spec = std::make_shared<ModelSpec>(to_model_spec(info[0]));
  auto built = std::make_shared<std::shared_ptr<ModelState>>();
  auto listing = std::make_shared<ModelListing>();
  return TaskWorker::Queue(
      env,
      [spec, built, listing] {
        auto state = std::make_shared<ModelState>();
        state->model = build_model(*spec);
        state->model->eval();
        *listing = list_model(*state->model);
        *built = state;
      },
      [built, listing](Napi::Env env) -> Napi::Value {
        return wrap_new_state(env, *built, std::move(*listing));
      },
      "yolo5.createModel");
}

// Synchronous and lock-free: from the listing the last changing call left.
Napi::Value ModelWrap::NamedParameters(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  state_->life.check(env);
  const auto& params = state_->listing.parameters;
  auto out = Napi::Array::New(env, params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", params[i].name);
    o.Set("shape", from_shape(env, params[i].shape));
    o.Set("requiresGrad", params[i].requires_grad);
    out.Set(i, o);
  }
  return out;
}

Napi::Value ModelWrap::StateEntries(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  state_->life.check(env);
  const auto& state = state_->listing.state;
  auto out = Napi::Array::New(env, state.size());
  for (size_t i = 0; i < state.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", state[i].name);
    o.Set("shape", from_shape(env, state[i].shape));
    o.Set("kind", state[i].is_parameter ? "param" : "buffer");
    o.Set("dtype", dtype_name(state[i].dtype));
    out.Set(i, o);
  }
  return out;
}

// setRequiresGrad(names: string[], flag: boolean) → number of parameters changed. E_BUSY while a
// call is using the model (a training epoch): the flags must not change under it.
Napi::Value ModelWrap::SetRequiresGrad(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 2 || !info[0].IsArray() || !info[1].IsBoolean())
    throw Napi::TypeError::New(env, "setRequiresGrad(names: string[], flag: boolean)");
  state_->life.check(env);
  std::unique_lock<std::mutex> lock(state_->mutex, std::try_to_lock);
  if (!lock.owns_lock())
    throw coded_error(env, "E_BUSY",
                      "the model is in use by a running call (a training epoch?): "
                      "change requires_grad after it completes");
  return guarded(env, [&]() -> Napi::Value {
    auto names = info[0].As<Napi::Array>();
    bool flag = info[1].As<Napi::Boolean>().Value();
    auto params = state_->model->named_parameters(true);
    uint32_t changed = 0;
    for (uint32_t i = 0; i < names.Length(); ++i) {
      if (!names.Get(i).IsString()) throw type_error(names.Get(i), "names", "a string");
      auto name = names.Get(i).As<Napi::String>().Utf8Value();
      auto* p = params.find(name);
      if (p == nullptr) throw Napi::Error::New(env, "no parameter named " + name);
      p->set_requires_grad(flag);
      ++changed;
    }
    state_->publish(env, list_model(*state_->model));
    return Napi::Number::New(env, changed);
  });
}

Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  state_->life.check(env);
  const auto& m = state_->listing;
  double params = 0, grads = 0;
  for (const auto& p : m.parameters) {
    double n = 1;
    for (auto s : p.shape) n *= static_cast<double>(s);
    params += n;
    if (p.requires_grad) grads += n;
  }
  auto o = Napi::Object::New(env);
  o.Set("layers", Napi::Number::New(env, static_cast<double>(m.modules)));
  o.Set("parameters", params);
  o.Set("gradients", grads);
  o.Set("gflops", m.gflops);
  auto layer_gflops = Napi::Array::New(env, m.layer_gflops.size());
  for (size_t i = 0; i < m.layer_gflops.size(); ++i) layer_gflops.Set(i, m.layer_gflops[i]);
  o.Set("layerGflops", layer_gflops);
  o.Set("nc", Napi::Number::New(env, static_cast<double>(m.nc)));
  o.Set("inChannels", m.in_channels);
  o.Set("fused", m.fused);
  auto stride = Napi::Array::New(env, m.stride.size());
  for (size_t i = 0; i < m.stride.size(); ++i) stride.Set(i, m.stride[i]);
  o.Set("stride", stride);
  o.Set("anchors", tensor_object(env, m.anchors));
  o.Set("hostBytes", static_cast<double>(m.host_bytes));
  return o;
}

// forward(data, shape, { train }) → Promise<{ output?: Tensor, raw: Tensor[] }>
Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 3) throw Napi::TypeError::New(env, "forward(data, shape, options)");
  auto input = std::make_shared<HostArray>(to_host_array(info[0], "input"));
  auto shape = to_shape(info[1], "shape");
  Fields fo(info[2], "forward options");
  const bool train = fo.boolean("train");
  const AmpMode amp = fo.has("amp") ? to_amp_mode(fo) : AmpMode::Off;
  if (input->dtype != c10::kFloat) throw Napi::TypeError::New(env, "input must be a Float32Array");
  int64_t n = 1;
  for (auto s : shape) n *= s;
  if (shape.size() != 4 || static_cast<size_t>(n) != input->length)
    throw Napi::RangeError::New(
        env, "input holds " + std::to_string(input->length) +
                 " values, shape needs 4 sizes (batch, channels, height, width) with that product");
  auto state = state_;
  auto result = std::make_shared<ForwardOutput>();
  return queue_on_models(
      env, {state},
      [state, input, shape, train, amp, result] {
        std::lock_guard<std::mutex> lock(state->mutex);
        auto& model = *state->model;
        auto x =
            torch::from_blob(input->data, shape, torch::kFloat).to(model.detect().anchors.device());
        AutocastGuard autocast(amp, x.device());
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
    Fields o(arr.Get(i), "loadState entries[" + std::to_string(i) + "]");
    Entry e;
    e.name = o.string("name");
    e.shape = to_shape(o.value("shape"), "shape");
    e.data = std::make_shared<HostArray>(to_host_array(o.value("data"), "data"));
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
  auto listing = std::make_shared<std::optional<ModelListing>>();
  return queue_on_models(
      env, {state},
      [state, entries, report, listing] {
        listing_after(*state, listing, [&](YoloModelImpl& model) {
          torch::NoGradGuard no_grad;
          std::unordered_map<std::string, torch::Tensor> targets;
          for (auto& kv : model.state()) targets.emplace(kv.first, kv.second);
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
            it->second.copy_(torch::from_blob(e.data->data, e.shape, e.data->dtype));
            ++report->loaded;
          }
          for (auto& kv : model.state())
            if (!seen.count(kv.first)) report->missing.push_back(kv.first);
        });
      },
      [report](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("loaded", report->loaded);
        o.Set("missing", from_strings(env, report->missing));
        o.Set("unexpected", from_strings(env, report->unexpected));
        o.Set("mismatched", from_strings(env, report->mismatched));
        return o;
      },
      "yolo5.loadState", {listing});
}

// getState() → Promise<[{ name, shape, dtype, data }]> in state-dict order.
Napi::Value ModelWrap::GetState(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto copies = std::make_shared<std::vector<std::pair<std::string, torch::Tensor>>>();
  auto state = state_;
  return queue_on_models(
      env, {state},
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
  auto listing = std::make_shared<std::optional<ModelListing>>();
  return queue_on_models(
      info.Env(), {state},
      [state, listing] { listing_after(*state, listing, [](YoloModelImpl& m) { m.fuse(); }); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, "yolo5.fuse", {listing});
}

}  // namespace yolo5
