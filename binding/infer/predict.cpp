#include "infer/predict.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

namespace yolo5 {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Where a letterboxed image sits in the model input, to map boxes back.
struct Placement {
  double gain = 1, pad_w = 0, pad_h = 0;
};

torch::Tensor to_input(const std::vector<const Image*>& images) {
  const int h = images[0]->height, w = images[0]->width;
  auto batch = torch::empty({static_cast<int64_t>(images.size()), h, w, 3}, torch::kUInt8);
  for (size_t i = 0; i < images.size(); ++i)
    std::memcpy(batch[static_cast<int64_t>(i)].data_ptr(), images[i]->pixels.data(),
                images[i]->pixels.size());
  return batch.permute({0, 3, 1, 2}).to(torch::kFloat).div_(255);
}

void scale_back(torch::Tensor& det, const Placement& p, int width, int height) {
  if (det.size(0) == 0) return;
  auto xs = det.slice(1, 0, 4);
  xs.select(1, 0).sub_(p.pad_w);
  xs.select(1, 2).sub_(p.pad_w);
  xs.select(1, 1).sub_(p.pad_h);
  xs.select(1, 3).sub_(p.pad_h);
  xs.div_(p.gain);
  xs.select(1, 0).clamp_(0, width);
  xs.select(1, 2).clamp_(0, width);
  xs.select(1, 1).clamp_(0, height);
  xs.select(1, 3).clamp_(0, height);
}

}  // namespace

std::vector<TtaPass> default_tta() { return {{1.0, false}, {0.83, true}, {0.67, false}}; }

torch::Tensor scale_batch(const torch::Tensor& x, double scale, int64_t gs) {
  TORCH_CHECK(x.dim() == 4, "scale_batch: x should be (batch, channels, height, width), got ",
              x.sizes());
  TORCH_CHECK(scale > 0 && gs > 0, "scale_batch: scale and grid must be positive, got ", scale,
              " and ", gs);
  if (scale == 1) return x;
  const int64_t h = x.size(2), w = x.size(3);
  const auto sh = static_cast<int64_t>(h * scale), sw = static_cast<int64_t>(w * scale);
  TORCH_CHECK(sh >= 1 && sw >= 1, "scale_batch: scale ", scale, " leaves no pixels of ", h, "x", w);
  namespace F = torch::nn::functional;
  auto y = F::interpolate(x, F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{sh, sw})
                                 .mode(torch::kBilinear)
                                 .align_corners(false));
  // The padded size comes from the unrounded scaled size, as the reference computes it.
  const auto ph = static_cast<int64_t>(std::ceil(h * scale / gs)) * gs;
  const auto pw = static_cast<int64_t>(std::ceil(w * scale / gs)) * gs;
  return torch::constant_pad_nd(y, {0, pw - sw, 0, ph - sh}, 0.447);
}

torch::Tensor augmented_forward(YoloModelImpl& model, const torch::Tensor& x,
                                const std::vector<TtaPass>& passes) {
  if (passes.empty()) return model.forward(x).decoded;
  const auto& strides = model.detect().stride;
  const auto gs = static_cast<int64_t>(*std::max_element(strides.begin(), strides.end()));
  const double width = static_cast<double>(x.size(3));
  std::vector<torch::Tensor> outs;
  outs.reserve(passes.size());
  for (size_t k = 0; k < passes.size(); ++k) {
    const auto& pass = passes[k];
    auto fwd = model.forward(scale_batch(pass.flip ? x.flip({3}) : x, pass.scale, gs));
    auto y = fwd.decoded;
    if (pass.scale != 1) y.slice(2, 0, 4).div_(pass.scale);
    if (pass.flip) y.select(2, 0).neg_().add_(width);
    if (passes.size() >= 2 && (k == 0 || k + 1 == passes.size())) {
      // Rows run level by level (stride 8 first); count them from the real grids rather than
      // assuming 4x per level, which only holds when the input is a multiple of the largest stride.
      const auto rows = [&](size_t l) {
        const auto& r = fwd.raw[l];
        return r.size(1) * r.size(2) * r.size(3);
      };
      const int64_t total = y.size(1);
      if (k == 0) y = y.slice(1, 0, total - rows(fwd.raw.size() - 1));  // large objects
      if (k + 1 == passes.size()) y = y.slice(1, rows(0), total);       // small objects
    }
    outs.push_back(y);
  }
  return outs.size() == 1 ? outs[0] : torch::cat(outs, 1);
}

std::string ImageInput::label() const {
  switch (kind) {
    case Kind::Path:
      return path;
    case Kind::Encoded:
      return "<encoded image buffer>";
    case Kind::Raw:
      return "<raw RGB " + std::to_string(width) + "x" + std::to_string(height) + ">";
  }
  return "<image>";
}

Image load_input(const ImageInput& input) {
  switch (input.kind) {
    case ImageInput::Kind::Path:
      return read_image(input.path);
    case ImageInput::Kind::Encoded:
      return decode_image(input.bytes.data(), input.bytes.size(), input.label());
    case ImageInput::Kind::Raw:
      return image_from_rgb(input.bytes.data(), input.width, input.height);
  }
  throw std::invalid_argument("unknown image input");
}

namespace {

// The largest stride among the models, after checking that they can form one ensemble.
int check_models(const std::vector<YoloModelImpl*>& models, const PredictOptions& opts) {
  if (models.empty()) throw std::invalid_argument("predict: no model");
  const YoloModelImpl& model = *models[0];
  int stride = 0;
  for (auto* m : models) {
    const auto& s = m->detect().stride;
    stride = std::max(stride, static_cast<int>(*std::max_element(s.begin(), s.end())));
    if (m->detect().nc != model.detect().nc)
      throw std::invalid_argument("predict: the ensemble's models have " +
                                  std::to_string(model.detect().nc) + " and " +
                                  std::to_string(m->detect().nc) + " classes");
    if (m->detect().anchors.device() != model.detect().anchors.device())
      throw std::invalid_argument("predict: the ensemble's models are on different devices");
  }
  if (opts.loss && (models.size() > 1 || !opts.tta.empty()))
    throw std::invalid_argument(
        "predict: the loss is computed for one model without test-time augmentation");
  return stride;
}

// Decodes one image and letterboxes it into `boxed`, recording where it sits.
void prepare(const ImageInput& input, const PredictOptions& opts, int stride, PredictResult& r,
             Image& boxed, Placement& p) {
  Image src = load_input(input);
  r.width = src.width;
  r.height = src.height;
  if (opts.shape) {
    // The reference's val path: long side to imgsz (area when shrinking), then letterbox
    // into the batch shape without upscaling.
    double ratio = static_cast<double>(opts.imgsz) / std::max(src.width, src.height);
    Image resized = src;
    if (ratio != 1) {
      resized = resize_image(src, static_cast<int>(std::ceil(src.width * ratio)),
                             static_cast<int>(std::ceil(src.height * ratio)),
                             ratio > 1 ? Interp::Linear : Interp::Area);
    }
    auto lb = letterbox(resized, opts.shape->first, opts.shape->second, false, false, stride);
    p.gain = static_cast<double>(resized.height) / src.height * lb.ratio;
    p.pad_w = lb.pad_w;
    p.pad_h = lb.pad_h;
    boxed = std::move(lb.image);
  } else {
    auto lb = letterbox(src, opts.imgsz, opts.imgsz, true, true, stride);
    const Image& im = lb.image;
    // Detect maps back from the shapes alone, as the reference does.
    p.gain = std::min(static_cast<double>(im.height) / src.height,
                      static_cast<double>(im.width) / src.width);
    p.pad_w = (im.width - src.width * p.gain) / 2;
    p.pad_h = (im.height - src.height * p.gain) / 2;
    boxed = std::move(lb.image);
  }
  if (opts.keep_images) r.image = std::move(src);
  r.ok = true;
}

// Batches: all images together when they share one shape (val), else one by one (detect).
std::vector<std::vector<int64_t>> make_batches(const std::vector<PredictResult>& results,
                                               const PredictOptions& opts) {
  const auto n = static_cast<int64_t>(results.size());
  std::vector<std::vector<int64_t>> batches;
  if (opts.shape) {
    batches.emplace_back();
    for (int64_t i = 0; i < n; ++i)
      if (results[i].ok) batches.back().push_back(i);
  } else {
    for (int64_t i = 0; i < n; ++i)
      if (results[i].ok) batches.push_back({i});
  }
  return batches;
}

// Val loss of one batch: the labels mapped into the batch's input (scaled by each placement's
// gain, shifted by its padding), summed into the timing.
void add_batch_loss(YoloModelImpl& model, const ForwardOutput& fwd, const torch::Tensor& x,
                    const std::vector<int64_t>& batch, const std::vector<PredictResult>& results,
                    const std::vector<Placement>& place, const PredictOptions& opts,
                    PredictTiming& timing) {
  const double H = static_cast<double>(x.size(2)), W = static_cast<double>(x.size(3));
  std::vector<float> rows;
  for (size_t k = 0; k < batch.size(); ++k) {
    const auto& r = results[batch[k]];
    const auto& p = place[batch[k]];
    for (const auto& l : opts.labels.at(batch[k])) {
      rows.insert(rows.end(), {static_cast<float>(k), l[0],
                               static_cast<float>((l[1] * r.width * p.gain + p.pad_w) / W),
                               static_cast<float>((l[2] * r.height * p.gain + p.pad_h) / H),
                               static_cast<float>(l[3] * r.width * p.gain / W),
                               static_cast<float>(l[4] * r.height * p.gain / H)});
    }
  }
  auto targets =
      torch::from_blob(rows.data(), {static_cast<int64_t>(rows.size() / 6), 6}, torch::kFloat)
          .to(x.device());
  auto parts = compute_loss(fwd.raw, targets, model.detect(), *opts.loss).parts.to(torch::kCPU);
  for (int j = 0; j < 3; ++j) timing.loss[j] += parts[j].item<double>();
  ++timing.loss_batches;
}

// The decoded rows of one batch over every model and pass, under autocast when opts.amp says so;
// `fwd` gets the plain pass's raw outputs (for the val loss).
torch::Tensor forward_batch(const std::vector<YoloModelImpl*>& models, const torch::Tensor& x,
                            const PredictOptions& opts, ForwardOutput& fwd) {
  AutocastGuard autocast(opts.amp, x.device());
  if (models.size() == 1 && opts.tta.empty()) {
    fwd = models[0]->forward(x);
    return fwd.decoded;
  }
  std::vector<torch::Tensor> parts;
  for (auto* m : models) parts.push_back(augmented_forward(*m, x, opts.tta));
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 1);
}

}  // namespace

std::vector<PredictResult> predict(const std::vector<YoloModelImpl*>& models,
                                   const std::vector<ImageInput>& inputs,
                                   const PredictOptions& opts, PredictTiming& timing) {
  const int stride = check_models(models, opts);
  YoloModelImpl& model = *models[0];
  const auto n = static_cast<int64_t>(inputs.size());
  std::vector<PredictResult> results(inputs.size());
  std::vector<Image> boxed(inputs.size());
  std::vector<Placement> place(inputs.size());

  auto t0 = Clock::now();
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      try {
        prepare(inputs[i], opts, stride, results[i], boxed[i], place[i]);
      } catch (const std::exception& e) {
        results[i].ok = false;
        results[i].error = e.what();
      }
    }
  });
  timing.pre_ms += ms_since(t0);

  c10::InferenceMode guard;
  for (auto* m : models) m->eval();
  auto device = model.detect().anchors.device();
  for (auto& batch : make_batches(results, opts)) {
    if (batch.empty()) continue;
    auto t1 = Clock::now();
    std::vector<const Image*> images;
    for (auto i : batch) images.push_back(&boxed[i]);
    auto x = to_input(images).to(device);
    timing.pre_ms += ms_since(t1);
    auto t2 = Clock::now();
    ForwardOutput fwd;
    auto out = forward_batch(models, x, opts, fwd);
    if (device.is_cuda()) out = out.to(torch::kCPU);  // NMS runs on the CPU copy
    timing.inference_ms += ms_since(t2);
    if (opts.loss) add_batch_loss(model, fwd, x, batch, results, place, opts, timing);
    auto t3 = Clock::now();
    auto dets = non_max_suppression(out, opts.nms);
    for (size_t k = 0; k < batch.size(); ++k) {
      auto& r = results[batch[k]];
      r.detections = dets[k].contiguous();
      scale_back(r.detections, place[batch[k]], r.width, r.height);
    }
    timing.nms_ms += ms_since(t3);
  }
  timing.images +=
      static_cast<int>(std::count_if(results.begin(), results.end(), [](auto& r) { return r.ok; }));
  return results;
}

}  // namespace yolo5
