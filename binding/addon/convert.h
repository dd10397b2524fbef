// JS values ⇄ C++ structs and tensors. Main thread only.
//
// Every option field is required: TypeScript resolves all defaults (lib/options.ts and the
// callers), and a missing or wrongly typed field is a TypeError naming it, e.g.
// "NativeTrainer options.epochs: expected a number but received undefined". Fields that are
// optional in lib/native/addon.ts mean "none" when absent (never a default value), and are
// type-checked when present.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "data/loader.h"
#include "infer/predict.h"
#include "loss/loss.h"
#include "model/amp.h"
#include "model/spec.h"
#include "train/optimizer.h"
#include "train/trainer.h"

namespace yolo5 {

// The fields of one JS object, read by name with a path for messages ("predict options.tta[1]").
class Fields {
 public:
  // Throws a TypeError when `value` is not an object.
  Fields(const Napi::Value& value, std::string where);

  bool has(const char* key) const;  // present and not undefined
  Napi::Value value(const char* key) const { return object_.Get(key); }
  double number(const char* key) const;
  int64_t integer(const char* key) const;
  bool boolean(const char* key) const;
  std::string string(const char* key) const;
  Fields object(const char* key) const;
  Napi::Array array(const char* key) const;
  std::string path(const char* key) const { return where_ + "." + key; }
  const std::string& where() const { return where_; }

 private:
  [[noreturn]] void fail(const char* key, const char* expected) const;

  Napi::Object object_;
  std::string where_;
};

// A TypeError "<where>: expected <what> but received <the value's type>".
Napi::TypeError type_error(const Napi::Value& v, const std::string& where, const char* expected);

// Everything `new NativeTrainer(model, ema, samples, options)` is configured with.
struct TrainerConfig {
  LoaderOptions loader;
  AugmentHyp augment;
  TrainerOptions trainer;
};
TrainerConfig to_trainer_config(const Napi::Value& options);
std::vector<Sample> to_samples(const Napi::Value& samples);
LossHyp to_loss_hyp(const Fields& hyp);
// The field "amp": "off", "bf16" or "fp16" (a RangeError names anything else).
AmpMode to_amp_mode(const Fields& o);
// Rows of 5 (class, cx, cy, w, h) from a Float32Array.
std::vector<std::array<float, 5>> to_label_rows(const Napi::Value& v, const std::string& where);

std::vector<OptimizerBuffer> to_optimizer_buffers(const Napi::Value& v);
Napi::Array from_optimizer_buffers(Napi::Env env, const std::vector<OptimizerBuffer>& buffers);

ModelSpec to_model_spec(const Napi::Value& spec);

ImageInput to_image_input(const Napi::Value& v);
// Everything but the ensemble (whose models addon/predict_wrap.cpp resolves).
PredictOptions to_predict_options(const Fields& o, size_t images);

std::vector<int64_t> to_shape(const Napi::Value& v, const char* what);
Napi::Array from_shape(Napi::Env env, c10::IntArrayRef sizes);
Napi::Array from_strings(Napi::Env env, const std::vector<std::string>& items);

// A host view of a JS typed array, kept alive by a reference while a worker reads it.
struct HostArray {
  void* data = nullptr;
  size_t length = 0;  // elements
  c10::ScalarType dtype = c10::kFloat;
  Napi::ObjectReference keep;
};
HostArray to_host_array(const Napi::Value& v, const char* what);

// Copies a CPU tensor into a new typed array of its dtype (float32, float64, int64, int32, uint8).
Napi::Value to_typed_array(Napi::Env env, const torch::Tensor& t);

std::string dtype_name(c10::ScalarType t);

}  // namespace yolo5
