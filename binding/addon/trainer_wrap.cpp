// NativeTrainer: a data loader, an optimizer and an EMA around one model; runs epochs off the
// event loop and reports batches through a thread-safe function.
//
// Lifetime: a trainer belongs to its model and EMA, so disposing either disposes it. dispose()
// aborts a running epoch (it ends after its current batch, the promise resolves with aborted)
// and frees the loader, optimizer state and gradients once that epoch has completed. info() and
// abort() never wait; setCounters() and setSampleWeights() fail with E_BUSY during a call.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>

#include "addon/convert.h"
#include "addon/lifetime.h"
#include "addon/model_wrap.h"
#include "addon/worker.h"
#include "train/trainer.h"

namespace yolo5 {

namespace {

struct TrainerState {
  std::shared_ptr<ModelState> model, ema;
  std::unique_ptr<Trainer> trainer;
  std::atomic<bool> abort{false};
  std::mutex mutex;  // held by the worker using the trainer

  Lifetime life{"trainer"};  // main thread only
  void dispose(Napi::Env env) {
    abort = true;
    life.dispose(env);
  }
};

Napi::Object times_object(Napi::Env env, const StepTimes& t) {
  auto o = Napi::Object::New(env);
  o.Set("data", t.data);
  o.Set("forward", t.forward);
  o.Set("backward", t.backward);
  o.Set("optimizer", t.optimizer);
  return o;
}

Napi::Object progress_object(Napi::Env env, const BatchProgress& p) {
  auto o = Napi::Object::New(env);
  o.Set("epoch", static_cast<double>(p.epoch));
  o.Set("batch", static_cast<double>(p.batch));
  o.Set("batches", static_cast<double>(p.batches));
  o.Set("lbox", p.lbox);
  o.Set("lobj", p.lobj);
  o.Set("lcls", p.lcls);
  o.Set("instances", static_cast<double>(p.instances));
  o.Set("size", static_cast<double>(p.size));
  o.Set("seconds", p.seconds);
  o.Set("times", times_object(env, p.times));
  return o;
}

Napi::Object stats_object(Napi::Env env, const EpochStats& s) {
  auto o = Napi::Object::New(env);
  o.Set("lbox", s.lbox);
  o.Set("lobj", s.lobj);
  o.Set("lcls", s.lcls);
  auto lrs = Napi::Array::New(env, s.lrs.size());
  for (size_t i = 0; i < s.lrs.size(); ++i) lrs.Set(i, s.lrs[i]);
  o.Set("lrs", lrs);
  o.Set("batches", static_cast<double>(s.batches));
  o.Set("images", static_cast<double>(s.images));
  o.Set("seconds", s.seconds);
  o.Set("times", times_object(env, s.times));
  o.Set("aborted", s.aborted);
  o.Set("nonFinite", s.non_finite);
  o.Set("skippedSteps", static_cast<double>(s.skipped_steps));
  o.Set("lossScale", s.loss_scale);
  o.Set("warnings", from_strings(env, s.warnings));
  return o;
}

// The trainer's lock for a synchronous change, or E_BUSY while a call holds it.
std::unique_lock<std::mutex> lock_now(Napi::Env env, std::mutex& mutex, const char* what) {
  std::unique_lock<std::mutex> lock(mutex, std::try_to_lock);
  if (!lock.owns_lock())
    throw coded_error(env, "E_BUSY",
                      std::string(what) +
                          ": the trainer is running a call (an epoch?); "
                          "call it after that completes");
  return lock;
}

class TrainerWrap : public Napi::ObjectWrap<TrainerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "NativeTrainer",
        {InstanceMethod<&TrainerWrap::RunEpoch>("runEpoch"),
         InstanceMethod<&TrainerWrap::Abort>("abort"), InstanceMethod<&TrainerWrap::Info>("info"),
         InstanceMethod<&TrainerWrap::OptimizerState>("optimizerState"),
         InstanceMethod<&TrainerWrap::LoadOptimizerState>("loadOptimizerState"),
         InstanceMethod<&TrainerWrap::SetCounters>("setCounters"),
         InstanceMethod<&TrainerWrap::Sample>("sample"),
         InstanceMethod<&TrainerWrap::SetSampleWeights>("setSampleWeights"),
         InstanceMethod<&TrainerWrap::Distributed>("distributedInfo"),
         InstanceMethod<&TrainerWrap::Dispose>("dispose"),
         InstanceAccessor<&TrainerWrap::Disposed>("disposed")});
  }

  explicit TrainerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerWrap>(info) {
    auto env = info.Env();
    if (info.Length() != 4 || !info[0].IsObject() || !(info[1].IsObject() || info[1].IsNull()))
      throw Napi::TypeError::New(env, "new NativeTrainer(model, ema | null, samples, options)");
    state_ = std::make_shared<TrainerState>();
    state_->model = ModelWrap::StateOf(info[0].As<Napi::Object>());
    if (info[1].IsObject()) state_->ema = ModelWrap::StateOf(info[1].As<Napi::Object>());
    // The models' JS objects live as long as this one: collecting one would dispose it, and
    // with it this trainer.
    model_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
    if (info[1].IsObject()) ema_ref_ = Napi::Persistent(info[1].As<Napi::Object>());
    auto samples = to_samples(info[2]);
    auto config = to_trainer_config(info[3]);
    build(env, std::move(samples), std::move(config));
  }

  ~TrainerWrap() override {
    if (state_) state_->dispose(Env());
  }

 private:
  // Builds the trainer on the main thread (quick: no image is read), with the models' locks so
  // that a call in flight on them is an E_BUSY rather than a race with the layout change.
  void build(Napi::Env env, std::vector<Sample> samples, TrainerConfig config) {
    std::unique_lock<std::mutex> model_lock(state_->model->mutex, std::try_to_lock);
    std::unique_lock<std::mutex> ema_lock;
    if (state_->ema && state_->ema != state_->model)
      ema_lock = std::unique_lock<std::mutex>(state_->ema->mutex, std::try_to_lock);
    if (!model_lock.owns_lock() || (state_->ema && state_->ema != state_->model && !ema_lock))
      throw coded_error(env, "E_BUSY",
                        "new NativeTrainer: the model is in use by a running call; "
                        "create the trainer after it completes");
    guarded(env, [&] {
      auto loader = std::make_unique<Loader>(std::move(samples), config.loader, config.augment);
      std::shared_ptr<ModelEma> ema;
      if (state_->ema) ema = std::make_shared<ModelEma>(state_->ema->model, 0);
      state_->trainer =
          std::make_unique<Trainer>(state_->model->model, ema, std::move(loader), config.trainer);
      return 0;
    });
    state_->life.set_release([s = state_.get()] { s->trainer.reset(); });
    std::weak_ptr<TrainerState> weak = state_;
    auto on_model_dispose = [weak](Napi::Env env) {
      if (auto s = weak.lock()) s->dispose(env);
    };
    state_->model->life.add_dependent(on_model_dispose);
    if (state_->ema) state_->ema->life.add_dependent(on_model_dispose);
    state_->life.report(env, state_->trainer->host_bytes());
  }

  // Queues a call on the trainer, counted in flight (and on `models`, publishing `listings`).
  // `execute` runs with the trainer's lock held; the trainer's bytes are reported after it.
  Napi::Promise queue(Napi::Env env, TaskWorker::Execute_ execute, TaskWorker::Resolve resolve,
                      const char* name, std::vector<std::shared_ptr<ModelState>> models = {},
                      std::vector<PendingListing> listings = {}) {
    auto state = state_;
    auto bytes = std::make_shared<std::optional<int64_t>>();
    auto run = [state, execute = std::move(execute), bytes] {
      std::lock_guard<std::mutex> lock(state->mutex);
      execute();
      *bytes = state->trainer->host_bytes();
    };
    state->life.begin(env);
    try {
      return queue_on_models(env, models, std::move(run), std::move(resolve), name,
                             std::move(listings), [state, bytes](Napi::Env env) {
                               if (bytes->has_value()) state->life.report(env, **bytes);
                               state->life.end(env);
                             });
    } catch (...) {
      state->life.end(env);
      throw;
    }
  }

  Napi::Value RunEpoch(const Napi::CallbackInfo& info);
  Napi::Value OptimizerState(const Napi::CallbackInfo& info);
  Napi::Value LoadOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value Sample(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value SetCounters(const Napi::CallbackInfo& info);
  Napi::Value SetSampleWeights(const Napi::CallbackInfo& info);
  Napi::Value Distributed(const Napi::CallbackInfo& info);

  Napi::Value Abort(const Napi::CallbackInfo& info) {
    state_->abort = true;  // always allowed, also after dispose
    return info.Env().Undefined();
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_->dispose(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Disposed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), state_->life.disposed());
  }

  std::shared_ptr<TrainerState> state_;
  Napi::ObjectReference model_ref_, ema_ref_;
};

// runEpoch(epoch, mosaic, onBatch) → Promise<EpochStats>
Napi::Value TrainerWrap::RunEpoch(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 3 || !info[0].IsNumber() || !info[1].IsBoolean() || !info[2].IsFunction())
    throw Napi::TypeError::New(env, "runEpoch(epoch: number, mosaic: boolean, onBatch)");
  state_->life.check(env);
  const int64_t epoch = info[0].As<Napi::Number>().Int64Value();
  const bool mosaic = info[1].As<Napi::Boolean>().Value();
  auto state = state_;
  state->abort = false;
  auto stats = std::make_shared<EpochStats>();
  std::vector<std::shared_ptr<ModelState>> models{state->model};
  std::vector<PendingListing> listings{std::make_shared<std::optional<ModelListing>>()};
  if (state->ema) {
    models.push_back(state->ema);
    listings.push_back(std::make_shared<std::optional<ModelListing>>());
  }
  auto tsfn = std::make_shared<Napi::ThreadSafeFunction>(
      Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "yolo5.batch", 8, 1));
  auto execute = [state, epoch, mosaic, stats, tsfn, models, listings] {
    // The models in address order, as predict locks an ensemble's, so the two cannot deadlock.
    std::vector<ModelState*> order;
    for (auto& m : models)
      if (std::find(order.begin(), order.end(), m.get()) == order.end()) order.push_back(m.get());
    std::sort(order.begin(), order.end());
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto* m : order) locks.emplace_back(m->mutex);
    auto on_batch = [tsfn](const BatchProgress& p) {
      auto* copy = new BatchProgress(p);
      auto status =
          tsfn->NonBlockingCall(copy, [](Napi::Env env, Napi::Function fn, BatchProgress* bp) {
            auto o = progress_object(env, *bp);
            delete bp;
            fn.Call({o});
          });
      if (status != napi_ok) delete copy;  // queue full: this progress report is dropped
    };
    try {
      *stats = state->trainer->run_epoch(epoch, mosaic, on_batch, state->abort);
    } catch (...) {
      tsfn->Release();
      throw;
    }
    tsfn->Release();
    for (size_t i = 0; i < models.size(); ++i) *listings[i] = list_model(*models[i]->model);
  };
  try {
    return queue(
        env, std::move(execute),
        [stats](Napi::Env env) -> Napi::Value { return stats_object(env, *stats); },
        "yolo5.runEpoch", models, listings);
  } catch (...) {
    tsfn->Release();  // never queued: the callback must not keep the event loop alive
    throw;
  }
}

// info() → counts and counters, without waiting for a running epoch.
Napi::Value TrainerWrap::Info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  state_->life.check(env);
  const auto& t = *state_->trainer;
  auto o = Napi::Object::New(env);
  o.Set("batchesPerEpoch", static_cast<double>(t.batches_per_epoch()));
  o.Set("images", static_cast<double>(t.loader().size()));
  o.Set("accumulate", t.accumulate());
  o.Set("weightDecay", t.weight_decay());
  o.Set("emaUpdates", static_cast<double>(t.ema() ? t.ema()->updates() : 0));
  o.Set("lastOptStep", static_cast<double>(t.last_opt_step()));
  return o;
}

// distributedInfo() → null, or { parameters (names averaged), bytes and buckets the last step
// all-reduced }, without waiting for a running epoch (the counts are atomics).
Napi::Value TrainerWrap::Distributed(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  state_->life.check(env);
  const auto* sync = state_->trainer->gradient_sync();
  if (!sync) return env.Null();
  auto o = Napi::Object::New(env);
  o.Set("parameters", from_strings(env, sync->names()));
  o.Set("lastStepBytes", static_cast<double>(sync->last_bytes()));
  o.Set("lastStepBuckets", static_cast<double>(sync->buckets()));
  return o;
}

// setCounters({ emaUpdates?, lastOptStep? }) when resuming: each given one is set.
Napi::Value TrainerWrap::SetCounters(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  state_->life.check(env);
  if (info.Length() != 1) throw Napi::TypeError::New(env, "setCounters(counters)");
  Fields o(info[0], "setCounters counters");
  auto lock = lock_now(env, state_->mutex, "setCounters");
  auto& t = *state_->trainer;
  if (o.has("emaUpdates") && t.ema()) t.ema()->set_updates(o.integer("emaUpdates"));
  if (o.has("lastOptStep")) t.set_last_opt_step(o.integer("lastOptStep"));
  return env.Undefined();
}

// setSampleWeights(Float64Array | null): --image-weights sampling for the next epochs.
Napi::Value TrainerWrap::SetSampleWeights(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  state_->life.check(env);
  std::vector<double> w;
  if (info.Length() != 1 ||
      !(info[0].IsNull() ||
        (info[0].IsTypedArray() &&
         info[0].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array)))
    throw Napi::TypeError::New(env, "setSampleWeights(weights: Float64Array | null)");
  if (!info[0].IsNull()) {
    auto a = info[0].As<Napi::Float64Array>();
    w.assign(a.Data(), a.Data() + a.ElementLength());
  }
  auto lock = lock_now(env, state_->mutex, "setSampleWeights");
  guarded(env, [&] {
    state_->trainer->loader().set_sample_weights(std::move(w));
    return 0;
  });
  return env.Undefined();
}

// optimizerState() → Promise<[{ name, key, shape, data }]>
Napi::Value TrainerWrap::OptimizerState(const Napi::CallbackInfo& info) {
  auto state = state_;
  auto buffers = std::make_shared<std::vector<OptimizerBuffer>>();
  return queue(
      info.Env(), [state, buffers] { *buffers = state->trainer->optimizer_buffers(); },
      [buffers](Napi::Env env) -> Napi::Value { return from_optimizer_buffers(env, *buffers); },
      "yolo5.optimizerState");
}

// loadOptimizerState([{ name, key, shape, data }]) → Promise<void>
Napi::Value TrainerWrap::LoadOptimizerState(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 1) throw Napi::TypeError::New(env, "loadOptimizerState(buffers)");
  auto buffers = std::make_shared<std::vector<OptimizerBuffer>>(to_optimizer_buffers(info[0]));
  auto state = state_;
  return queue(
      env, [state, buffers] { state->trainer->load_optimizer_buffers(*buffers); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, "yolo5.loadOptimizerState");
}

// sample(index, epoch, mosaic) → Promise<{ width, height, data (RGB), labels (n×5) }>
Napi::Value TrainerWrap::Sample(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsBoolean())
    throw Napi::TypeError::New(env, "sample(index: number, epoch: number, mosaic: boolean)");
  const int64_t index = info[0].As<Napi::Number>().Int64Value();
  const int64_t epoch = info[1].As<Napi::Number>().Int64Value();
  const bool mosaic = info[2].As<Napi::Boolean>().Value();
  auto state = state_;
  auto out = std::make_shared<std::pair<Image, std::vector<std::array<float, 5>>>>();
  return queue(
      env,
      [state, index, epoch, mosaic, out] {
        TORCH_CHECK(index >= 0 && index < state->trainer->loader().size(),
                    "sample index out of range");
        *out = state->trainer->loader().sample(index, epoch, mosaic);
      },
      [out](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("width", out->first.width);
        o.Set("height", out->first.height);
        auto data = Napi::Uint8Array::New(env, out->first.pixels.size());
        std::memcpy(data.Data(), out->first.pixels.data(), out->first.pixels.size());
        o.Set("data", data);
        auto labels = Napi::Float32Array::New(env, out->second.size() * 5);
        for (size_t i = 0; i < out->second.size(); ++i)
          for (int k = 0; k < 5; ++k) labels[i * 5 + k] = out->second[i][k];
        o.Set("labels", labels);
        return o;
      },
      "yolo5.sample");
}

}  // namespace

Napi::Function DefineTrainer(Napi::Env env) { return TrainerWrap::Define(env); }

}  // namespace yolo5
