#include "addon/convert.h"

#include <cstring>

namespace yolo5 {

namespace {

Arg to_arg(const Napi::Value& v) {
  Arg a;
  if (v.IsNull() || v.IsUndefined()) return a;
  if (v.IsBoolean()) {
    a.kind = Arg::Kind::Bool;
    a.number = v.As<Napi::Boolean>().Value() ? 1 : 0;
  } else if (v.IsNumber()) {
    a.kind = Arg::Kind::Number;
    a.number = v.As<Napi::Number>().DoubleValue();
  } else if (v.IsString()) {
    a.kind = Arg::Kind::String;
    a.text = v.As<Napi::String>().Utf8Value();
  } else if (v.IsArray()) {
    a.kind = Arg::Kind::List;
    auto arr = v.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) a.items.push_back(to_arg(arr.Get(i)));
  } else {
    throw Napi::TypeError::New(v.Env(), "model spec: unsupported argument value");
  }
  return a;
}

int32_t int_field(const Napi::Object& o, const char* key) {
  auto v = o.Get(key);
  if (!v.IsNumber())
    throw Napi::TypeError::New(o.Env(), std::string("model spec: ") + key + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

}  // namespace

ModelSpec to_model_spec(const Napi::Object& js) {
  ModelSpec spec;
  spec.in_channels = int_field(js, "inChannels");
  if (js.Has("activation") && js.Get("activation").IsObject()) {
    auto act = js.Get("activation").As<Napi::Object>();
    spec.activation.kind = act.Get("kind").As<Napi::String>().Utf8Value();
    if (act.Get("slope").IsNumber())
      spec.activation.slope = act.Get("slope").As<Napi::Number>().DoubleValue();
  }
  auto layers = js.Get("layers");
  if (!layers.IsArray())
    throw Napi::TypeError::New(js.Env(), "model spec: layers must be an array");
  auto arr = layers.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    auto o = arr.Get(i).As<Napi::Object>();
    LayerSpec l;
    l.index = static_cast<int>(i);
    auto from = o.Get("from").As<Napi::Array>();
    for (uint32_t j = 0; j < from.Length(); ++j)
      l.from.push_back(from.Get(j).As<Napi::Number>().Int32Value());
    l.module = o.Get("module").As<Napi::String>().Utf8Value();
    l.repeats = int_field(o, "repeats");
    auto args = o.Get("args").As<Napi::Array>();
    for (uint32_t j = 0; j < args.Length(); ++j) l.args.push_back(to_arg(args.Get(j)));
    spec.layers.push_back(std::move(l));
  }
  return spec;
}

std::vector<int64_t> to_shape(const Napi::Value& v, const char* what) {
  if (!v.IsArray())
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an array of sizes");
  auto arr = v.As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    auto x = arr.Get(i);
    if (!x.IsNumber() || x.As<Napi::Number>().DoubleValue() < 0)
      throw Napi::TypeError::New(v.Env(), std::string(what) + " must hold sizes >= 0");
    out.push_back(x.As<Napi::Number>().Int64Value());
  }
  return out;
}

Napi::Array from_shape(Napi::Env env, c10::IntArrayRef sizes) {
  auto arr = Napi::Array::New(env, sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i)
    arr.Set(i, Napi::Number::New(env, static_cast<double>(sizes[i])));
  return arr;
}

HostArray to_host_array(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray())
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a typed array");
  auto ta = v.As<Napi::TypedArray>();
  HostArray h;
  switch (ta.TypedArrayType()) {
    case napi_float32_array:
      h.dtype = c10::kFloat;
      break;
    case napi_float64_array:
      h.dtype = c10::kDouble;
      break;
    case napi_bigint64_array:
      h.dtype = c10::kLong;
      break;
    case napi_int32_array:
      h.dtype = c10::kInt;
      break;
    case napi_uint8_array:
      h.dtype = c10::kByte;
      break;
    default:
      throw Napi::TypeError::New(v.Env(),
                                 std::string(what) +
                                     " must be a Float32Array, Float64Array, BigInt64Array, "
                                     "Int32Array or Uint8Array");
  }
  h.data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  h.length = ta.ElementLength();
  h.keep = Napi::Persistent(v.As<Napi::Object>());
  return h;
}

Napi::Value to_typed_array(Napi::Env env, const torch::Tensor& tensor) {
  auto t = tensor.detach().to(torch::kCPU).contiguous();
  auto n = static_cast<size_t>(t.numel());
  auto copy = [&](auto arr) {
    if (n > 0) std::memcpy(arr.Data(), t.data_ptr(), n * t.element_size());
    return arr;
  };
  switch (t.scalar_type()) {
    case c10::kFloat:
      return copy(Napi::Float32Array::New(env, n));
    case c10::kDouble:
      return copy(Napi::Float64Array::New(env, n));
    case c10::kLong:
      return copy(Napi::BigInt64Array::New(env, n));
    case c10::kInt:
      return copy(Napi::Int32Array::New(env, n));
    case c10::kByte:
      return copy(Napi::Uint8Array::New(env, n));
    case c10::kHalf:
    case c10::kBFloat16:
      return to_typed_array(env, t.to(torch::kFloat));
    default:
      throw Napi::TypeError::New(env,
                                 "cannot convert tensor of dtype " + dtype_name(t.scalar_type()));
  }
}

std::string dtype_name(c10::ScalarType t) {
  switch (t) {
    case c10::kFloat:
      return "float32";
    case c10::kDouble:
      return "float64";
    case c10::kHalf:
      return "float16";
    case c10::kBFloat16:
      return "bfloat16";
    case c10::kLong:
      return "int64";
    case c10::kInt:
      return "int32";
    case c10::kByte:
      return "uint8";
    case c10::kBool:
      return "bool";
    default:
      return c10::toString(t);
  }
}

}  // namespace yolo5
