// JS values ⇄ C++ structs and tensors. Main thread only.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "model/spec.h"

namespace yolo5 {

ModelSpec to_model_spec(const Napi::Object& js);

std::vector<int64_t> to_shape(const Napi::Value& v, const char* what);
Napi::Array from_shape(Napi::Env env, c10::IntArrayRef sizes);

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
