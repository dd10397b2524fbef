#include "addon/convert.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "addon/dist_wrap.h"

namespace yolo5 {

namespace {

std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsNumber()) {
    std::ostringstream s;
    s << v.As<Napi::Number>().DoubleValue();
    return s.str();
  }
  if (v.IsString()) return "a string";
  if (v.IsArray()) return "an array";
  if (v.IsTypedArray()) return "a typed array";
  if (v.IsFunction()) return "a function";
  return "an object";
}

bool is_integer(const Napi::Value& v) {
  if (!v.IsNumber()) return false;
  const double d = v.As<Napi::Number>().DoubleValue();
  return std::isfinite(d) && std::floor(d) == d;
}

// An integer field that must be at least `min` (sizes and counts: a zero batch would divide by 0).
int64_t integer_at_least(const Fields& o, const char* key, int64_t min) {
  const int64_t v = o.integer(key);
  if (v < min)
    throw Napi::RangeError::New(o.value(key).Env(),
                                o.path(key) + ": expected an integer >= " + std::to_string(min) +
                                    " but received " + std::to_string(v));
  return v;
}

Arg to_arg(const Napi::Value& v, const std::string& where) {
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
    for (uint32_t i = 0; i < arr.Length(); ++i)
      a.items.push_back(to_arg(arr.Get(i), where + "[" + std::to_string(i) + "]"));
  } else {
    throw type_error(v, where, "null, a boolean, a number, a string or a list");
  }
  return a;
}

LayerSpec to_layer_spec(const Fields& o, int index) {
  LayerSpec l;
  l.index = index;
  auto from = o.array("from");
  for (uint32_t j = 0; j < from.Length(); ++j) {
    if (!is_integer(from.Get(j)))
      throw type_error(from.Get(j), o.path("from") + "[" + std::to_string(j) + "]", "an integer");
    l.from.push_back(from.Get(j).As<Napi::Number>().Int32Value());
  }
  l.module = o.string("module");
  l.repeats = static_cast<int>(integer_at_least(o, "repeats", 1));
  auto args = o.array("args");
  for (uint32_t j = 0; j < args.Length(); ++j)
    l.args.push_back(to_arg(args.Get(j), o.path("args") + "[" + std::to_string(j) + "]"));
  return l;
}

AugmentHyp to_augment_hyp(const Fields& h) {
  AugmentHyp a;
  a.hsv_h = h.number("hsv_h");
  a.hsv_s = h.number("hsv_s");
  a.hsv_v = h.number("hsv_v");
  a.degrees = h.number("degrees");
  a.translate = h.number("translate");
  a.scale = h.number("scale");
  a.shear = h.number("shear");
  a.perspective = h.number("perspective");
  a.flipud = h.number("flipud");
  a.fliplr = h.number("fliplr");
  a.mosaic = h.number("mosaic");
  a.mixup = h.number("mixup");
  return a;
}

TrainHyp to_train_hyp(const Fields& h) {
  TrainHyp t;
  t.lr0 = h.number("lr0");
  t.lrf = h.number("lrf");
  t.momentum = h.number("momentum");
  t.weight_decay = h.number("weight_decay");
  t.warmup_epochs = h.number("warmup_epochs");
  t.warmup_momentum = h.number("warmup_momentum");
  t.warmup_bias_lr = h.number("warmup_bias_lr");
  return t;
}

OptimizerKind to_optimizer_kind(const Fields& o) {
  const auto name = o.string("optimizer");
  try {
    return optimizer_kind(name);
  } catch (const std::invalid_argument&) {
    throw Napi::RangeError::New(o.value("optimizer").Env(),
                                o.path("optimizer") +
                                    ": expected \"SGD\", \"Adam\" or \"AdamW\" but received \"" +
                                    name + "\"");
  }
}

std::vector<TtaPass> to_tta(const Fields& o) {
  std::vector<TtaPass> passes;
  auto arr = o.array("tta");
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Fields p(arr.Get(i), o.path("tta") + "[" + std::to_string(i) + "]");
    TtaPass pass{p.number("scale"), p.boolean("flip")};
    if (!(pass.scale > 0 && pass.scale <= 1))
      throw Napi::RangeError::New(
          arr.Env(), "tta: scale must be in (0, 1], got " + std::to_string(pass.scale));
    passes.push_back(pass);
  }
  return passes;
}

}  // namespace

Napi::TypeError type_error(const Napi::Value& v, const std::string& where, const char* expected) {
  return Napi::TypeError::New(v.Env(),
                              where + ": expected " + expected + " but received " + describe(v));
}

Fields::Fields(const Napi::Value& value, std::string where) : where_(std::move(where)) {
  if (!value.IsObject() || value.IsArray()) throw type_error(value, where_, "an object");
  object_ = value.As<Napi::Object>();
}

void Fields::fail(const char* key, const char* expected) const {
  throw type_error(object_.Get(key), path(key), expected);
}

bool Fields::has(const char* key) const { return !object_.Get(key).IsUndefined(); }

double Fields::number(const char* key) const {
  auto v = object_.Get(key);
  if (!v.IsNumber()) fail(key, "a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t Fields::integer(const char* key) const {
  auto v = object_.Get(key);
  if (!is_integer(v)) fail(key, "an integer");
  return v.As<Napi::Number>().Int64Value();
}

bool Fields::boolean(const char* key) const {
  auto v = object_.Get(key);
  if (!v.IsBoolean()) fail(key, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string Fields::string(const char* key) const {
  auto v = object_.Get(key);
  if (!v.IsString()) fail(key, "a string");
  return v.As<Napi::String>().Utf8Value();
}

Fields Fields::object(const char* key) const { return Fields(object_.Get(key), path(key)); }

Napi::Array Fields::array(const char* key) const {
  auto v = object_.Get(key);
  if (!v.IsArray()) fail(key, "an array");
  return v.As<Napi::Array>();
}

namespace {

// Data-parallel: the group, and the global batch split into the loader's per-rank batch.
void to_distributed(const Fields& d, TrainerConfig& c) {
  auto& to = c.trainer;
  to.dist = GroupOf(d.value("group"), d.path("group"));
  to.sync_bn = d.boolean("syncBn");
  const int world = to.dist->world();
  if (to.batch % world != 0)
    throw Napi::RangeError::New(d.value("group").Env(), "NativeTrainer options.batch " +
                                                            std::to_string(to.batch) +
                                                            " does not split evenly over " +
                                                            std::to_string(world) + " ranks");
  c.loader.batch = to.batch / world;
  c.loader.rank = to.dist->rank();
  c.loader.world = world;
}

}  // namespace

AmpMode to_amp_mode(const Fields& o) {
  const auto name = o.string("amp");
  try {
    return amp_mode(name);
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(o.value("amp").Env(), o.path("amp") + ": " + e.what());
  }
}

TrainerConfig to_trainer_config(const Napi::Value& options) {
  Fields o(options, "NativeTrainer options");
  TrainerConfig c;
  auto& lo = c.loader;
  lo.imgsz = static_cast<int>(integer_at_least(o, "imgsz", 1));
  lo.batch = static_cast<int>(integer_at_least(o, "batch", 1));
  lo.stride = static_cast<int>(integer_at_least(o, "stride", 1));
  lo.augment = o.boolean("augment");
  lo.rect = o.boolean("rect");
  lo.shuffle = !lo.rect;
  lo.cache = o.boolean("cache");
  lo.workers = static_cast<int>(integer_at_least(o, "workers", 0));
  lo.seed = static_cast<uint64_t>(integer_at_least(o, "seed", 0));
  auto hyp = o.object("hyp");
  c.augment = to_augment_hyp(hyp);
  auto& to = c.trainer;
  to.hyp = to_train_hyp(hyp);
  to.epochs = integer_at_least(o, "epochs", 1);
  to.batch = lo.batch;
  to.nbs = static_cast<int>(integer_at_least(o, "nbs", 1));
  to.optimizer = to_optimizer_kind(o);
  to.cos_lr = o.boolean("cosLr");
  to.freeze_bn = o.boolean("freezeBn");
  to.channels_last = o.boolean("channelsLast");
  to.multi_scale = o.boolean("multiScale");
  to.amp = to_amp_mode(o);
  to.loss_scale = o.number("lossScale");
  if (!(to.loss_scale >= 0) || !std::isfinite(to.loss_scale))
    throw Napi::RangeError::New(options.Env(), o.path("lossScale") +
                                                   ": expected a finite number >= 0 but received " +
                                                   std::to_string(to.loss_scale));
  to.imgsz = lo.imgsz;
  to.stride = lo.stride;
  to.seed = lo.seed;
  to.loss = to_loss_hyp(o.object("loss"));
  if (o.has("distributed")) to_distributed(o.object("distributed"), c);
  if (o.has("testGradients")) to.test_gradients = o.string("testGradients");
  return c;
}

std::vector<std::array<float, 5>> to_label_rows(const Napi::Value& v, const std::string& where) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw type_error(v, where, "a Float32Array");
  auto labels = v.As<Napi::Float32Array>();
  if (labels.ElementLength() % 5 != 0)
    throw Napi::RangeError::New(v.Env(), where + ": labels must be rows of 5");
  std::vector<std::array<float, 5>> rows;
  for (size_t k = 0; k + 5 <= labels.ElementLength(); k += 5)
    rows.push_back({labels[k], labels[k + 1], labels[k + 2], labels[k + 3], labels[k + 4]});
  return rows;
}

std::vector<Sample> to_samples(const Napi::Value& samples) {
  if (!samples.IsArray()) throw type_error(samples, "NativeTrainer samples", "an array");
  auto arr = samples.As<Napi::Array>();
  std::vector<Sample> out;
  out.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Fields o(arr.Get(i), "NativeTrainer samples[" + std::to_string(i) + "]");
    Sample s;
    s.path = o.string("path");
    s.width = static_cast<int>(integer_at_least(o, "width", 0));
    s.height = static_cast<int>(integer_at_least(o, "height", 0));
    s.labels = to_label_rows(o.value("labels"), s.path);
    out.push_back(std::move(s));
  }
  return out;
}

LossHyp to_loss_hyp(const Fields& o) {
  LossHyp h;
  h.box = o.number("box");
  h.cls = o.number("cls");
  h.obj = o.number("obj");
  h.cls_pw = o.number("cls_pw");
  h.obj_pw = o.number("obj_pw");
  h.anchor_t = o.number("anchor_t");
  h.fl_gamma = o.number("fl_gamma");
  h.label_smoothing = o.number("label_smoothing");
  return h;
}

std::vector<OptimizerBuffer> to_optimizer_buffers(const Napi::Value& v) {
  if (!v.IsArray()) throw type_error(v, "optimizer buffers", "an array");
  auto arr = v.As<Napi::Array>();
  std::vector<OptimizerBuffer> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Fields o(arr.Get(i), "optimizer buffers[" + std::to_string(i) + "]");
    auto host = to_host_array(o.value("data"), "data");
    auto shape = to_shape(o.value("shape"), "shape");
    int64_t n = 1;
    for (auto s : shape) n *= s;
    if (static_cast<size_t>(n) != host.length)
      throw Napi::RangeError::New(v.Env(), o.where() + ": data holds " +
                                               std::to_string(host.length) +
                                               " values for a shape of " + std::to_string(n));
    auto t = torch::from_blob(host.data, shape, host.dtype).to(torch::kFloat).clone();
    out.push_back({o.string("name"), o.string("key"), t});
  }
  return out;
}

Napi::Array from_optimizer_buffers(Napi::Env env, const std::vector<OptimizerBuffer>& buffers) {
  auto out = Napi::Array::New(env, buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", buffers[i].name);
    o.Set("key", buffers[i].key);
    o.Set("shape", from_shape(env, buffers[i].tensor.sizes()));
    o.Set("data", to_typed_array(env, buffers[i].tensor.to(torch::kFloat)));
    out.Set(i, o);
  }
  return out;
}

ModelSpec to_model_spec(const Napi::Value& value) {
  Fields js(value, "model spec");
  ModelSpec spec;
  spec.in_channels = static_cast<int>(integer_at_least(js, "inChannels", 1));
  auto act = js.object("activation");
  spec.activation.kind = act.string("kind");
  // The slope only means something for LeakyReLU, where it is required.
  if (spec.activation.kind == "LeakyReLU" || act.has("slope"))
    spec.activation.slope = act.number("slope");
  auto layers = js.array("layers");
  for (uint32_t i = 0; i < layers.Length(); ++i) {
    Fields o(layers.Get(i), "model spec.layers[" + std::to_string(i) + "]");
    spec.layers.push_back(to_layer_spec(o, static_cast<int>(i)));
  }
  return spec;
}

ImageInput to_image_input(const Napi::Value& v) {
  ImageInput in;
  if (v.IsString()) {
    in.kind = ImageInput::Kind::Path;
    in.path = v.As<Napi::String>().Utf8Value();
  } else if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    auto a = v.As<Napi::Uint8Array>();
    in.kind = ImageInput::Kind::Encoded;
    in.bytes.assign(a.Data(), a.Data() + a.ElementLength());
  } else if (v.IsObject() && v.As<Napi::Object>().Get("data").IsTypedArray()) {
    auto o = v.As<Napi::Object>();
    auto data = o.Get("data");
    if (data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw type_error(data, "raw image data", "a Uint8Array");
    auto a = data.As<Napi::Uint8Array>();
    Fields f(o, "raw image");
    in.kind = ImageInput::Kind::Raw;
    in.width = static_cast<int>(f.integer("width"));
    in.height = static_cast<int>(f.integer("height"));
    if (in.width <= 0 || in.height <= 0 ||
        a.ElementLength() != static_cast<size_t>(in.width) * in.height * 3)
      throw Napi::RangeError::New(v.Env(),
                                  "raw image: data must hold width × height × 3 RGB bytes");
    in.bytes.assign(a.Data(), a.Data() + a.ElementLength());
  } else {
    throw Napi::TypeError::New(
        v.Env(), "an image is a path, an encoded Uint8Array, or { data, width, height }");
  }
  return in;
}

PredictOptions to_predict_options(const Fields& o, size_t images) {
  PredictOptions opts;
  opts.imgsz = static_cast<int>(integer_at_least(o, "imgsz", 1));
  if (o.has("shape")) {
    auto s = to_shape(o.value("shape"), "shape");
    if (s.size() != 2) throw type_error(o.value("shape"), o.path("shape"), "[height, width]");
    opts.shape = std::make_pair(static_cast<int>(s[0]), static_cast<int>(s[1]));
  }
  opts.nms.conf = o.number("conf");
  opts.nms.iou = o.number("iou");
  opts.nms.multi_label = o.boolean("multiLabel");
  opts.nms.agnostic = o.boolean("agnostic");
  opts.nms.max_det = integer_at_least(o, "maxDet", 0);
  if (o.has("amp")) opts.amp = to_amp_mode(o);
  if (o.has("classes")) opts.nms.classes = to_shape(o.value("classes"), "classes");
  // augment: true → the reference's passes; tta: [{ scale, flip }] → exactly these passes.
  if (o.has("augment") && o.boolean("augment")) opts.tta = default_tta();
  if (o.has("tta")) opts.tta = to_tta(o);
  if (o.has("loss")) {
    opts.loss = to_loss_hyp(o.object("loss"));
    auto labels = o.value("labels");
    if (!labels.IsArray() || labels.As<Napi::Array>().Length() != images)
      throw Napi::TypeError::New(
          labels.Env(), "predict: loss needs labels, one Float32Array of rows of 5 per image");
    auto la = labels.As<Napi::Array>();
    for (uint32_t i = 0; i < la.Length(); ++i)
      opts.labels.push_back(
          to_label_rows(la.Get(i), o.path("labels") + "[" + std::to_string(i) + "]"));
  }
  return opts;
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

Napi::Array from_strings(Napi::Env env, const std::vector<std::string>& items) {
  auto a = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); ++i) a.Set(i, items[i]);
  return a;
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
