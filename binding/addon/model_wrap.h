// The JS handle of one model. Every slow method queues a TaskWorker; a mutex serialises calls that
// use the same model so concurrent Promises never race on its mode or buffers.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>

#include "model/yolo.h"

namespace yolo5 {

struct ModelState {
  std::shared_ptr<YoloModelImpl> model;
  std::mutex mutex;
};

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  // createModel(spec) → Promise<ModelWrap>
  static Napi::Value Create(const Napi::CallbackInfo& info);
  explicit ModelWrap(const Napi::CallbackInfo& info);
  // The model behind a NativeModel object (throws a TypeError for anything else).
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
  Napi::Value Predict(const Napi::CallbackInfo& info);  // predict_wrap.cpp
  Napi::Value Loss(const Napi::CallbackInfo& info);     // train_wrap.cpp
  Napi::Value Clone(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);

  std::shared_ptr<ModelState> state_;
};

Napi::Value ImageInfo(const Napi::CallbackInfo& info);
Napi::Function DefineTrainer(Napi::Env env);
Napi::Value DrawDetections(const Napi::CallbackInfo& info);

}  // namespace yolo5
