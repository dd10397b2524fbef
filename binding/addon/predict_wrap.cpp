// predict, imageInfo and drawDetections: the inference surface.
#include <napi.h>

#include <algorithm>

#include "addon/convert.h"
#include "addon/model_wrap.h"
#include "addon/worker.h"
#include "data/draw.h"
#include "infer/predict.h"

namespace yolo5 {
LossHyp to_loss_hyp(const Napi::Object& o);  // train_wrap.cpp
}

namespace yolo5 {

namespace {

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
    auto a = o.Get("data").As<Napi::Uint8Array>();
    in.kind = ImageInput::Kind::Raw;
    in.width = o.Get("width").As<Napi::Number>().Int32Value();
    in.height = o.Get("height").As<Napi::Number>().Int32Value();
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

double num(const Napi::Object& o, const char* key, double fallback) {
  auto v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

bool flag(const Napi::Object& o, const char* key) { return o.Get(key).ToBoolean().Value(); }

}  // namespace

// predict(images, options) → Promise<{ results: [{ ok, error?, width, height, detections }], timing
// }>
Napi::Value ModelWrap::Predict(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 2 || !info[0].IsArray() || !info[1].IsObject())
    throw Napi::TypeError::New(env, "predict(images, options)");
  auto arr = info[0].As<Napi::Array>();
  auto inputs = std::make_shared<std::vector<ImageInput>>();
  for (uint32_t i = 0; i < arr.Length(); ++i) inputs->push_back(to_image_input(arr.Get(i)));
  auto o = info[1].As<Napi::Object>();
  PredictOptions opts;
  opts.imgsz = static_cast<int>(num(o, "imgsz", 640));
  if (o.Get("shape").IsArray()) {
    auto s = to_shape(o.Get("shape"), "shape");
    if (s.size() != 2) throw Napi::TypeError::New(env, "shape must be [height, width]");
    opts.shape = std::make_pair(static_cast<int>(s[0]), static_cast<int>(s[1]));
  }
  opts.nms.conf = num(o, "conf", 0.25);
  opts.nms.iou = num(o, "iou", 0.45);
  opts.nms.multi_label = flag(o, "multiLabel");
  opts.nms.agnostic = flag(o, "agnostic");
  opts.nms.max_det = static_cast<int64_t>(num(o, "maxDet", 300));
  if (o.Get("classes").IsArray()) opts.nms.classes = to_shape(o.Get("classes"), "classes");
  // augment: true → the reference's passes; tta: [{ scale, flip }] → exactly these passes.
  if (flag(o, "augment")) opts.tta = default_tta();
  if (o.Get("tta").IsArray()) {
    auto passes = o.Get("tta").As<Napi::Array>();
    opts.tta.clear();
    for (uint32_t i = 0; i < passes.Length(); ++i) {
      if (!passes.Get(i).IsObject())
        throw Napi::TypeError::New(env, "tta: each pass is { scale, flip }");
      auto p = passes.Get(i).As<Napi::Object>();
      TtaPass pass{num(p, "scale", 1), flag(p, "flip")};
      if (!(pass.scale > 0 && pass.scale <= 1))
        throw Napi::RangeError::New(
            env, "tta: scale must be in (0, 1], got " + std::to_string(pass.scale));
      opts.tta.push_back(pass);
    }
  }
  // ensemble: further NativeModels run on the same batches (their outputs join before NMS).
  std::vector<std::shared_ptr<ModelState>> states{state_};
  if (o.Get("ensemble").IsArray()) {
    auto others = o.Get("ensemble").As<Napi::Array>();
    for (uint32_t i = 0; i < others.Length(); ++i) {
      if (!others.Get(i).IsObject())
        throw Napi::TypeError::New(env, "ensemble: expected NativeModel objects");
      states.push_back(ModelWrap::StateOf(others.Get(i).As<Napi::Object>()));
    }
  }
  if (o.Get("loss").IsObject()) {
    opts.loss = to_loss_hyp(o.Get("loss").As<Napi::Object>());
    auto labels = o.Get("labels");
    if (!labels.IsArray() || labels.As<Napi::Array>().Length() != inputs->size())
      throw Napi::TypeError::New(
          env, "predict: loss needs labels, one Float32Array of rows of 5 per image");
    auto la = labels.As<Napi::Array>();
    for (uint32_t i = 0; i < la.Length(); ++i) {
      auto rows = la.Get(i).As<Napi::Float32Array>();
      std::vector<std::array<float, 5>> list;
      for (size_t k = 0; k + 5 <= rows.ElementLength(); k += 5)
        list.push_back({rows[k], rows[k + 1], rows[k + 2], rows[k + 3], rows[k + 4]});
      opts.labels.push_back(std::move(list));
    }
  }
  auto results = std::make_shared<std::vector<PredictResult>>();
  auto timing = std::make_shared<PredictTiming>();
  return TaskWorker::Queue(
      env,
      [states, inputs, opts, results, timing] {
        // Each distinct model locked once, always in address order, so that two ensembles
        // sharing models cannot deadlock.
        std::vector<ModelState*> distinct;
        for (auto& s : states) distinct.push_back(s.get());
        std::sort(distinct.begin(), distinct.end());
        distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
        std::vector<std::unique_lock<std::mutex>> locks;
        for (auto* s : distinct) locks.emplace_back(s->mutex);
        std::vector<YoloModelImpl*> models;
        for (auto& s : states) models.push_back(s->model.get());
        *results = predict(models, *inputs, opts, *timing);
      },
      [results, timing](Napi::Env env) -> Napi::Value {
        auto out = Napi::Array::New(env, results->size());
        for (size_t i = 0; i < results->size(); ++i) {
          auto& r = (*results)[i];
          auto o = Napi::Object::New(env);
          o.Set("ok", r.ok);
          if (!r.ok) o.Set("error", r.error);
          o.Set("width", r.width);
          o.Set("height", r.height);
          o.Set("detections",
                r.ok ? to_typed_array(env, r.detections) : Napi::Float32Array::New(env, 0));
          out.Set(i, o);
        }
        auto t = Napi::Object::New(env);
        t.Set("pre", timing->pre_ms);
        t.Set("inference", timing->inference_ms);
        t.Set("nms", timing->nms_ms);
        t.Set("images", timing->images);
        if (timing->loss_batches > 0) {
          auto l = Napi::Array::New(env, 3);
          for (uint32_t j = 0; j < 3; ++j) l.Set(j, timing->loss[j] / timing->loss_batches);
          t.Set("loss", l);
        }
        auto res = Napi::Object::New(env);
        res.Set("results", out);
        res.Set("timing", t);
        return res;
      },
      "yolo5.predict");
}

// imageInfo(paths) → Promise<[{ width, height, restored? } | { error }]>: data-set verification
// (probe_image: the header, and a full decode only for a JPEG without its end marker).
Napi::Value ImageInfo(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "imageInfo(paths)");
  auto arr = info[0].As<Napi::Array>();
  auto paths = std::make_shared<std::vector<std::string>>();
  for (uint32_t i = 0; i < arr.Length(); ++i)
    paths->push_back(arr.Get(i).As<Napi::String>().Utf8Value());
  auto sizes = std::make_shared<std::vector<ImageSize>>(paths->size());
  auto errors = std::make_shared<std::vector<std::string>>(paths->size());
  return TaskWorker::Queue(
      env,
      [paths, sizes, errors] {
        at::parallel_for(0, static_cast<int64_t>(paths->size()), 16, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) {
            try {
              (*sizes)[i] = probe_image((*paths)[i]);
            } catch (const std::exception& ex) {
              (*errors)[i] = ex.what();
            }
          }
        });
      },
      [sizes, errors](Napi::Env env) -> Napi::Value {
        auto out = Napi::Array::New(env, sizes->size());
        for (size_t i = 0; i < sizes->size(); ++i) {
          auto o = Napi::Object::New(env);
          if ((*errors)[i].empty()) {
            o.Set("width", (*sizes)[i].width);
            o.Set("height", (*sizes)[i].height);
            if (!(*sizes)[i].restored.empty()) o.Set("restored", (*sizes)[i].restored);
          } else {
            o.Set("error", (*errors)[i]);
          }
          out.Set(i, o);
        }
        return out;
      },
      "yolo5.imageInfo");
}

// drawDetections(image, boxes: [{ x1, y1, x2, y2, cls, label }], { lineWidth, output?, format?,
//   crops?: [{ index, path }] }) → Promise<Uint8Array | undefined>: writes `output` (by extension)
//   or returns the encoded image; writes crops of the unannotated source.
Napi::Value DrawDetections(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 3 || !info[1].IsArray() || !info[2].IsObject())
    throw Napi::TypeError::New(env, "drawDetections(image, boxes, options)");
  auto input = std::make_shared<ImageInput>(to_image_input(info[0]));
  struct Box {
    float x1, y1, x2, y2;
    int cls;
    std::string label;
  };
  auto boxes = std::make_shared<std::vector<Box>>();
  auto arr = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    auto b = arr.Get(i).As<Napi::Object>();
    boxes->push_back(
        {static_cast<float>(num(b, "x1", 0)), static_cast<float>(num(b, "y1", 0)),
         static_cast<float>(num(b, "x2", 0)), static_cast<float>(num(b, "y2", 0)),
         static_cast<int>(num(b, "cls", 0)),
         b.Get("label").IsString() ? b.Get("label").As<Napi::String>().Utf8Value() : ""});
  }
  auto o = info[2].As<Napi::Object>();
  int lw = static_cast<int>(num(o, "lineWidth", 0));
  std::string output =
      o.Get("output").IsString() ? o.Get("output").As<Napi::String>().Utf8Value() : "";
  std::string format =
      o.Get("format").IsString() ? o.Get("format").As<Napi::String>().Utf8Value() : "jpg";
  auto crops = std::make_shared<std::vector<std::pair<int, std::string>>>();
  if (o.Get("crops").IsArray()) {
    auto c = o.Get("crops").As<Napi::Array>();
    for (uint32_t i = 0; i < c.Length(); ++i) {
      auto item = c.Get(i).As<Napi::Object>();
      crops->emplace_back(static_cast<int>(num(item, "index", 0)),
                          item.Get("path").As<Napi::String>().Utf8Value());
    }
  }
  auto encoded = std::make_shared<std::vector<uint8_t>>();
  return TaskWorker::Queue(
      env,
      [input, boxes, lw, output, format, crops, encoded] {
        Image img = load_input(*input);
        for (auto& [index, path] : *crops) {
          auto& b = boxes->at(static_cast<size_t>(index));
          write_image(crop_image(img, static_cast<int>(b.x1), static_cast<int>(b.y1),
                                 static_cast<int>(b.x2), static_cast<int>(b.y2)),
                      path);
        }
        // The reference's default thickness: about 0.3% of the image's size, at least 2.
        int line =
            lw > 0 ? lw
                   : std::max(static_cast<int>(std::lround((img.width + img.height) / 2.0 * 0.003)),
                              2);
        for (auto& b : *boxes)
          draw_detection(img, b.x1, b.y1, b.x2, b.y2, b.label, class_color(b.cls), line);
        if (!output.empty()) {
          write_image(img, output);
        } else {
          *encoded = encode_image(img, format);
        }
      },
      [output, encoded](Napi::Env env) -> Napi::Value {
        if (!output.empty()) return env.Undefined();
        auto out = Napi::Uint8Array::New(env, encoded->size());
        std::memcpy(out.Data(), encoded->data(), encoded->size());
        return out;
      },
      "yolo5.drawDetections");
}

}  // namespace yolo5
