// predict, imageInfo and drawDetections: the inference surface.
#include <napi.h>

#include <algorithm>

#include "addon/convert.h"
#include "addon/model_wrap.h"
#include "addon/worker.h"
#include "data/draw.h"
#include "infer/predict.h"

namespace yolo5 {

// predict(images, options) → Promise<{ results: [{ ok, error?, width, height, detections }], timing
// }>
Napi::Value ModelWrap::Predict(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 2 || !info[0].IsArray() || !info[1].IsObject())
    throw Napi::TypeError::New(env, "predict(images, options)");
  auto arr = info[0].As<Napi::Array>();
  auto inputs = std::make_shared<std::vector<ImageInput>>();
  for (uint32_t i = 0; i < arr.Length(); ++i) inputs->push_back(to_image_input(arr.Get(i)));
  Fields o(info[1], "predict options");
  auto opts = to_predict_options(o, inputs->size());
  // ensemble: further NativeModels run on the same batches (their outputs join before NMS).
  std::vector<std::shared_ptr<ModelState>> states{state_};
  if (o.has("ensemble")) {
    auto others = o.array("ensemble");
    for (uint32_t i = 0; i < others.Length(); ++i) {
      if (!others.Get(i).IsObject())
        throw Napi::TypeError::New(env, "ensemble: expected NativeModel objects");
      states.push_back(ModelWrap::StateOf(others.Get(i).As<Napi::Object>()));
    }
  }
  auto results = std::make_shared<std::vector<PredictResult>>();
  auto timing = std::make_shared<PredictTiming>();
  return queue_on_models(
      env, states,
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
    Fields b(arr.Get(i), "drawDetections boxes[" + std::to_string(i) + "]");
    boxes->push_back({static_cast<float>(b.number("x1")), static_cast<float>(b.number("y1")),
                      static_cast<float>(b.number("x2")), static_cast<float>(b.number("y2")),
                      static_cast<int>(b.integer("cls")), b.string("label")});
  }
  Fields o(info[2], "drawDetections options");
  // lineWidth absent (or 0): the reference's thickness for the image's size.
  const int lw = o.has("lineWidth") ? static_cast<int>(o.integer("lineWidth")) : 0;
  // Either a file to write (format from its extension) or the format of the bytes to return.
  const std::string output = o.has("output") ? o.string("output") : "";
  const std::string format = o.has("format") ? o.string("format") : "";
  if (output.empty() == format.empty())
    throw Napi::TypeError::New(env,
                               "drawDetections options: expected exactly one of output "
                               "(a file to write) or format (the bytes to return)");
  auto crops = std::make_shared<std::vector<std::pair<int, std::string>>>();
  if (o.has("crops")) {
    auto c = o.array("crops");
    for (uint32_t i = 0; i < c.Length(); ++i) {
      Fields item(c.Get(i), o.path("crops") + "[" + std::to_string(i) + "]");
      const auto index = item.integer("index");
      if (index < 0 || static_cast<size_t>(index) >= boxes->size())
        throw Napi::RangeError::New(env, item.path("index") + ": no box " + std::to_string(index));
      crops->emplace_back(static_cast<int>(index), item.string("path"));
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
