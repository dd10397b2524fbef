// NativeTrainer: a data loader, an optimizer and an EMA around one model; runs epochs off the
// event loop and reports batches through a thread-safe function.
#include <napi.h>

#include <atomic>

#include "addon/convert.h"
#include "addon/model_wrap.h"
#include "addon/worker.h"
#include "train/trainer.h"

namespace yolo5 {

LossHyp to_loss_hyp(const Napi::Object& o);  // train_wrap.cpp

namespace {

struct TrainerState {
  std::shared_ptr<ModelState> model, ema;
  std::unique_ptr<Trainer> trainer;
  std::atomic<bool> abort{false};
  std::mutex mutex;  // one epoch (or state access) at a time
};

double num(const Napi::Object& o, const char* key, double fallback) {
  auto v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

Napi::Object times_object(Napi::Env env, const StepTimes& t) {
  auto o = Napi::Object::New(env);
  o.Set("data", t.data);
  o.Set("forward", t.forward);
  o.Set("backward", t.backward);
  o.Set("optimizer", t.optimizer);
  return o;
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
         InstanceMethod<&TrainerWrap::SetSampleWeights>("setSampleWeights")});
  }

  explicit TrainerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerWrap>(info) {
    auto env = info.Env();
    if (info.Length() != 4 || !info[0].IsObject() || !info[2].IsArray() || !info[3].IsObject())
      throw Napi::TypeError::New(env, "new NativeTrainer(model, ema | null, samples, options)");
    state_ = std::make_shared<TrainerState>();
    state_->model = ModelWrap::StateOf(info[0].As<Napi::Object>());
    if (info[1].IsObject()) state_->ema = ModelWrap::StateOf(info[1].As<Napi::Object>());
    auto arr = info[2].As<Napi::Array>();
    std::vector<yolo5::Sample> samples;
    samples.reserve(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto o = arr.Get(i).As<Napi::Object>();
      yolo5::Sample s;
      s.path = o.Get("path").As<Napi::String>().Utf8Value();
      s.width = static_cast<int>(num(o, "width", 0));
      s.height = static_cast<int>(num(o, "height", 0));
      auto labels = o.Get("labels").As<Napi::Float32Array>();
      if (labels.ElementLength() % 5 != 0)
        throw Napi::RangeError::New(env, s.path + ": labels must be rows of 5");
      for (size_t k = 0; k + 5 <= labels.ElementLength(); k += 5)
        s.labels.push_back({labels[k], labels[k + 1], labels[k + 2], labels[k + 3], labels[k + 4]});
      samples.push_back(std::move(s));
    }
    auto o = info[3].As<Napi::Object>();
    LoaderOptions lo;
    lo.imgsz = static_cast<int>(num(o, "imgsz", 640));
    lo.batch = static_cast<int>(num(o, "batch", 16));
    lo.stride = static_cast<int>(num(o, "stride", 32));
    lo.augment = !o.Has("augment") || o.Get("augment").ToBoolean().Value();
    lo.rect = o.Get("rect").ToBoolean().Value();
    lo.shuffle = !lo.rect;
    lo.cache = o.Get("cache").ToBoolean().Value();
    lo.workers = static_cast<int>(num(o, "workers", 2));
    lo.seed = static_cast<uint64_t>(num(o, "seed", 0));
    AugmentHyp ah;
    auto hyp = o.Get("hyp").As<Napi::Object>();
    ah.hsv_h = num(hyp, "hsv_h", ah.hsv_h);
    ah.hsv_s = num(hyp, "hsv_s", ah.hsv_s);
    ah.hsv_v = num(hyp, "hsv_v", ah.hsv_v);
    ah.degrees = num(hyp, "degrees", ah.degrees);
    ah.translate = num(hyp, "translate", ah.translate);
    ah.scale = num(hyp, "scale", ah.scale);
    ah.shear = num(hyp, "shear", ah.shear);
    ah.perspective = num(hyp, "perspective", ah.perspective);
    ah.flipud = num(hyp, "flipud", ah.flipud);
    ah.fliplr = num(hyp, "fliplr", ah.fliplr);
    ah.mosaic = num(hyp, "mosaic", ah.mosaic);
    ah.mixup = num(hyp, "mixup", ah.mixup);
    TrainerOptions to;
    to.epochs = static_cast<int64_t>(num(o, "epochs", 100));
    to.batch = lo.batch;
    to.nbs = static_cast<int>(num(o, "nbs", 64));
    if (o.Get("optimizer").IsString())
      to.optimizer = o.Get("optimizer").As<Napi::String>().Utf8Value();
    to.cos_lr = o.Get("cosLr").ToBoolean().Value();
    to.freeze_bn = o.Get("freezeBn").ToBoolean().Value();
    to.channels_last = o.Get("channelsLast").ToBoolean().Value();
    to.multi_scale = o.Get("multiScale").ToBoolean().Value();
    to.imgsz = lo.imgsz;
    to.stride = lo.stride;
    to.seed = lo.seed;
    to.hyp.lr0 = num(hyp, "lr0", to.hyp.lr0);
    to.hyp.lrf = num(hyp, "lrf", to.hyp.lrf);
    to.hyp.momentum = num(hyp, "momentum", to.hyp.momentum);
    to.hyp.weight_decay = num(hyp, "weight_decay", to.hyp.weight_decay);
    to.hyp.warmup_epochs = num(hyp, "warmup_epochs", to.hyp.warmup_epochs);
    to.hyp.warmup_momentum = num(hyp, "warmup_momentum", to.hyp.warmup_momentum);
    to.hyp.warmup_bias_lr = num(hyp, "warmup_bias_lr", to.hyp.warmup_bias_lr);
    to.loss = to_loss_hyp(o.Get("loss").As<Napi::Object>());
    guarded(env, [&] {
      auto loader = std::make_unique<Loader>(std::move(samples), lo, ah);
      std::shared_ptr<ModelEma> ema;
      if (state_->ema) ema = std::make_shared<ModelEma>(state_->ema->model, 0);
      state_->trainer = std::make_unique<Trainer>(state_->model->model, ema, std::move(loader), to);
      return 0;
    });
  }

 private:
  // runEpoch(epoch, mosaic, onBatch) → Promise<EpochStats>
  Napi::Value RunEpoch(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    if (info.Length() != 3 || !info[0].IsNumber() || !info[2].IsFunction())
      throw Napi::TypeError::New(env, "runEpoch(epoch, mosaic, onBatch)");
    const int64_t epoch = info[0].As<Napi::Number>().Int64Value();
    const bool mosaic = info[1].ToBoolean().Value();
    auto tsfn =
        Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "yolo5.batch", 8, 1);
    auto state = state_;
    state->abort = false;
    auto stats = std::make_shared<EpochStats>();
    auto release = std::make_shared<Napi::ThreadSafeFunction>(tsfn);
    return TaskWorker::Queue(
        env,
        [state, epoch, mosaic, stats, release] {
          std::lock_guard<std::mutex> lock(state->mutex);
          std::lock_guard<std::mutex> model_lock(state->model->mutex);
          std::unique_ptr<std::lock_guard<std::mutex>> ema_lock;
          if (state->ema)
            ema_lock = std::make_unique<std::lock_guard<std::mutex>>(state->ema->mutex);
          auto on_batch = [release](const BatchProgress& p) {
            auto* copy = new BatchProgress(p);
            auto status = release->NonBlockingCall(
                copy, [](Napi::Env env, Napi::Function fn, BatchProgress* bp) {
                  auto o = Napi::Object::New(env);
                  o.Set("epoch", static_cast<double>(bp->epoch));
                  o.Set("batch", static_cast<double>(bp->batch));
                  o.Set("batches", static_cast<double>(bp->batches));
                  o.Set("lbox", bp->lbox);
                  o.Set("lobj", bp->lobj);
                  o.Set("lcls", bp->lcls);
                  o.Set("instances", static_cast<double>(bp->instances));
                  o.Set("size", static_cast<double>(bp->size));
                  o.Set("seconds", bp->seconds);
                  o.Set("times", times_object(env, bp->times));
                  delete bp;
                  fn.Call({o});
                });
            if (status != napi_ok) delete copy;  // queue full: this progress report is dropped
          };
          try {
            *stats = state->trainer->run_epoch(epoch, mosaic, on_batch, state->abort);
          } catch (...) {
            release->Release();
            throw;
          }
          release->Release();
        },
        [stats](Napi::Env env) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("lbox", stats->lbox);
          o.Set("lobj", stats->lobj);
          o.Set("lcls", stats->lcls);
          auto lrs = Napi::Array::New(env, stats->lrs.size());
          for (size_t i = 0; i < stats->lrs.size(); ++i) lrs.Set(i, stats->lrs[i]);
          o.Set("lrs", lrs);
          o.Set("batches", static_cast<double>(stats->batches));
          o.Set("images", static_cast<double>(stats->images));
          o.Set("seconds", stats->seconds);
          o.Set("times", times_object(env, stats->times));
          o.Set("aborted", stats->aborted);
          o.Set("nonFinite", stats->non_finite);
          auto w = Napi::Array::New(env, stats->warnings.size());
          for (size_t i = 0; i < stats->warnings.size(); ++i) w.Set(i, stats->warnings[i]);
          o.Set("warnings", w);
          return o;
        },
        "yolo5.runEpoch");
  }

  Napi::Value Abort(const Napi::CallbackInfo& info) {
    state_->abort = true;
    return info.Env().Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    auto& t = *state_->trainer;
    auto o = Napi::Object::New(env);
    o.Set("batchesPerEpoch", static_cast<double>(t.batches_per_epoch()));
    o.Set("images", static_cast<double>(t.loader().size()));
    o.Set("accumulate", t.accumulate());
    o.Set("weightDecay", t.weight_decay());
    o.Set("emaUpdates", static_cast<double>(t.ema() ? t.ema()->updates() : 0));
    o.Set("lastOptStep", static_cast<double>(t.last_opt_step()));
    return o;
  }

  // setCounters({ emaUpdates, lastOptStep }) when resuming.
  Napi::Value SetCounters(const Napi::CallbackInfo& info) {
    auto o = info[0].As<Napi::Object>();
    auto& t = *state_->trainer;
    if (o.Get("emaUpdates").IsNumber() && t.ema())
      t.ema()->set_updates(o.Get("emaUpdates").As<Napi::Number>().Int64Value());
    if (o.Get("lastOptStep").IsNumber())
      t.set_last_opt_step(o.Get("lastOptStep").As<Napi::Number>().Int64Value());
    return info.Env().Undefined();
  }

  // setSampleWeights(Float64Array | null): --image-weights sampling for the next epochs.
  Napi::Value SetSampleWeights(const Napi::CallbackInfo& info) {
    std::vector<double> w;
    if (info.Length() == 1 && info[0].IsTypedArray()) {
      auto a = info[0].As<Napi::Float64Array>();
      w.assign(a.Data(), a.Data() + a.ElementLength());
    }
    std::lock_guard<std::mutex> lock(state_->mutex);
    guarded(info.Env(), [&] {
      state_->trainer->loader().set_sample_weights(std::move(w));
      return 0;
    });
    return info.Env().Undefined();
  }

  // optimizerState() → Promise<[{ name, key, shape, data }]>
  Napi::Value OptimizerState(const Napi::CallbackInfo& info) {
    auto state = state_;
    auto buffers =
        std::make_shared<std::vector<std::tuple<std::string, std::string, torch::Tensor>>>();
    return TaskWorker::Queue(
        info.Env(),
        [state, buffers] {
          std::lock_guard<std::mutex> lock(state->mutex);
          *buffers = state->trainer->optimizer_buffers();
        },
        [buffers](Napi::Env env) -> Napi::Value {
          auto out = Napi::Array::New(env, buffers->size());
          for (size_t i = 0; i < buffers->size(); ++i) {
            auto& [name, key, t] = (*buffers)[i];
            auto o = Napi::Object::New(env);
            o.Set("name", name);
            o.Set("key", key);
            o.Set("shape", from_shape(env, t.sizes()));
            o.Set("data", to_typed_array(env, t.to(torch::kFloat)));
            out.Set(i, o);
          }
          return out;
        },
        "yolo5.optimizerState");
  }

  Napi::Value LoadOptimizerState(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    auto arr = info[0].As<Napi::Array>();
    auto buffers =
        std::make_shared<std::vector<std::tuple<std::string, std::string, torch::Tensor>>>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto o = arr.Get(i).As<Napi::Object>();
      auto host = to_host_array(o.Get("data"), "data");
      auto shape = to_shape(o.Get("shape"), "shape");
      auto t = torch::from_blob(host.data, shape, host.dtype).to(torch::kFloat).clone();
      buffers->emplace_back(o.Get("name").As<Napi::String>().Utf8Value(),
                            o.Get("key").As<Napi::String>().Utf8Value(), t);
    }
    auto state = state_;
    return TaskWorker::Queue(
        env,
        [state, buffers] {
          std::lock_guard<std::mutex> lock(state->mutex);
          state->trainer->load_optimizer_buffers(*buffers);
        },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, "yolo5.loadOptimizerState");
  }

  // sample(index, epoch, mosaic) → Promise<{ width, height, data (RGB), labels (n×5) }>
  Napi::Value Sample(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    const int64_t index = info[0].As<Napi::Number>().Int64Value();
    const int64_t epoch = info[1].As<Napi::Number>().Int64Value();
    const bool mosaic = info[2].ToBoolean().Value();
    auto state = state_;
    auto out = std::make_shared<std::pair<Image, std::vector<std::array<float, 5>>>>();
    return TaskWorker::Queue(
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

  std::shared_ptr<TrainerState> state_;
};

}  // namespace

Napi::Function DefineTrainer(Napi::Env env) { return TrainerWrap::Define(env); }

}  // namespace yolo5
