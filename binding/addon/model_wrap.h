// The JS handle of one model. Every slow method queues a TaskWorker; a mutex serialises calls that
// use the same model so concurrent Promises never race on its mode or buffers. Synchronous
// methods never take that mutex: they read a listing that each changing call refreshes, or fail
// fast with E_BUSY while a call is using the model (addon/lifetime.h has dispose()).
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>
#include <optional>

#include "addon/lifetime.h"
#include "addon/worker.h"
#include "model/listing.h"
#include "model/yolo.h"

namespace yolo5 {

struct ModelState {
  std::shared_ptr<YoloModelImpl> model;  // reset when disposed and idle
  std::mutex mutex;                      // held by the worker using the model

  // Main thread only.
  ModelListing listing;
  Lifetime life{"model"};
  // Takes a listing made under the mutex (names, flags, anchors, host bytes) for synchronous
  // calls, and tells V8 the bytes.
  void publish(Napi::Env env, ModelListing l);
};

// A listing to fill in a worker and publish on the main thread when the call settles.
using PendingListing = std::shared_ptr<std::optional<ModelListing>>;

// Queues a call that uses `states` (one model, or an ensemble): each must not be disposed, and
// each counts the call as in flight until it settles (so dispose() frees only after it).
// `listings` (optional, one per state) are published when the call settles, then `after` runs.
Napi::Promise queue_on_models(Napi::Env env, const std::vector<std::shared_ptr<ModelState>>& states,
                              TaskWorker::Execute_ execute, TaskWorker::Resolve resolve,
                              const char* name, std::vector<PendingListing> listings = {},
                              TaskWorker::Done after = nullptr);

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  // createModel(spec) → Promise<ModelWrap>
  static Napi::Value Create(const Napi::CallbackInfo& info);
  explicit ModelWrap(const Napi::CallbackInfo& info);
  ~ModelWrap() override;
  // The model behind a NativeModel object (a TypeError for anything else, E_DISPOSED when
  // disposed).
  static std::shared_ptr<ModelState> StateOf(const Napi::Object& obj);

 private:
  Napi::Value NamedParameters(const Napi::CallbackInfo& info);
  Napi::Value StateEntries(const Napi::CallbackInfo& info);
  Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value LoadState(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value Fuse(const Napi::CallbackInfo& info);
  Napi::Value Predict(const Napi::CallbackInfo& info);   // predict_wrap.cpp
  Napi::Value Loss(const Napi::CallbackInfo& info);      // train_wrap.cpp
  Napi::Value AmpCheck(const Napi::CallbackInfo& info);  // train_wrap.cpp
  Napi::Value Clone(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);

  std::shared_ptr<ModelState> state_;
};

Napi::Value ImageInfo(const Napi::CallbackInfo& info);
Napi::Function DefineTrainer(Napi::Env env);
Napi::Value DrawDetections(const Napi::CallbackInfo& info);

}  // namespace yolo5
