// Training-side methods of NativeModel: the loss (with gradients) on one batch.
#include <napi.h>

#include <optional>

#include "addon/convert.h"
#include "addon/model_wrap.h"
#include "addon/worker.h"
#include "loss/loss.h"

namespace yolo5 {

// loss(input, shape, targets (n×6), hyp, { train, gradNames: string[], channelsLast, amp? })
//   → Promise<{ loss, lbox, lobj, lcls, gradNorms: { name: norm } }>
// In train mode the forward uses batch statistics and gradients are computed (then cleared).
// With amp ("bf16", "fp16") the forward runs under autocast and the loss on fp32 predictions,
// as in a training step (no loss scaling: the gradients are those of the loss itself).
Napi::Value ModelWrap::Loss(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 5)
    throw Napi::TypeError::New(env, "loss(input, shape, targets, hyp, options)");
  auto input = std::make_shared<HostArray>(to_host_array(info[0], "input"));
  auto shape = to_shape(info[1], "shape");
  auto targets = std::make_shared<HostArray>(to_host_array(info[2], "targets"));
  if (input->dtype != c10::kFloat || targets->dtype != c10::kFloat)
    throw Napi::TypeError::New(env, "input and targets must be Float32Arrays");
  if (targets->length % 6 != 0)
    throw Napi::RangeError::New(env, "targets must hold rows of 6 values");
  auto hyp = to_loss_hyp(Fields(info[3], "loss hyp"));
  Fields o(info[4], "loss options");
  const bool train = o.boolean("train"), channels_last = o.boolean("channelsLast");
  const AmpMode amp = o.has("amp") ? to_amp_mode(o) : AmpMode::Off;
  std::vector<std::string> grad_names;
  auto names = o.array("gradNames");
  for (uint32_t i = 0; i < names.Length(); ++i) {
    if (!names.Get(i).IsString())
      throw type_error(names.Get(i), o.path("gradNames") + "[" + std::to_string(i) + "]",
                       "a string");
    grad_names.push_back(names.Get(i).As<Napi::String>().Utf8Value());
  }
  struct Result {
    double loss = 0, lbox = 0, lobj = 0, lcls = 0;
    std::vector<std::pair<std::string, double>> norms;
  };
  auto result = std::make_shared<Result>();
  auto state = state_;
  return queue_on_models(
      env, {state},
      [state, input, shape, targets, hyp, train, channels_last, amp, grad_names, result] {
        std::lock_guard<std::mutex> lock(state->mutex);
        auto& model = *state->model;
        auto device = model.detect().anchors.device();
        auto x = torch::from_blob(input->data, shape, torch::kFloat).to(device);
        // An NHWC input makes every activation NHWC, as training's channels-last batches do.
        if (channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
        auto t = torch::from_blob(targets->data, {static_cast<int64_t>(targets->length / 6), 6},
                                  torch::kFloat)
                     .to(device);
        model.train(train);
        model.zero_grad();
        LossOutput out;
        {
          std::optional<torch::NoGradGuard> no_grad;
          if (!train) no_grad.emplace();
          std::vector<torch::Tensor> raw;
          {
            AutocastGuard autocast(amp, device);
            raw = model.forward(x).raw;
          }
          out = compute_loss(raw, t, model.detect(), hyp);
          if (train) out.total.backward();
        }
        model.eval();
        result->loss = out.total.item<double>();
        auto parts = out.parts.to(torch::kCPU);
        result->lbox = parts[0].item<double>();
        result->lobj = parts[1].item<double>();
        result->lcls = parts[2].item<double>();
        auto params = model.named_parameters(true);
        for (auto& name : grad_names) {
          auto* p = params.find(name);
          if (p == nullptr) throw std::invalid_argument("no parameter named " + name);
          result->norms.emplace_back(name,
                                     p->grad().defined() ? p->grad().norm().item<double>() : 0.0);
        }
        model.zero_grad();
      },
      [result](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("loss", result->loss);
        o.Set("lbox", result->lbox);
        o.Set("lobj", result->lobj);
        o.Set("lcls", result->lcls);
        auto norms = Napi::Object::New(env);
        for (auto& [name, v] : result->norms) norms.Set(name, v);
        o.Set("gradNorms", norms);
        return o;
      },
      "yolo5.loss");
}

// ampCheck(input, shape, amp) → Promise<{ maxDiff, finite, rows }>: the AMP self-check (eval mode,
// fp32 against autocast, the largest |Δ| of the decoded boxes' xywhn).
Napi::Value ModelWrap::AmpCheck(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() != 3 || !info[2].IsString())
    throw Napi::TypeError::New(env, "ampCheck(input, shape, amp)");
  auto input = std::make_shared<HostArray>(to_host_array(info[0], "input"));
  auto shape = to_shape(info[1], "shape");
  int64_t n = 1;
  for (auto s : shape) n *= s;
  if (input->dtype != c10::kFloat || shape.size() != 4 || static_cast<size_t>(n) != input->length)
    throw Napi::TypeError::New(env, "ampCheck: input must be a Float32Array of the shape's size");
  AmpMode mode;
  try {
    mode = amp_mode(info[2].As<Napi::String>().Utf8Value());
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(env, std::string("ampCheck amp: ") + e.what());
  }
  auto result = std::make_shared<yolo5::AmpCheck>();
  auto state = state_;
  return queue_on_models(
      env, {state},
      [state, input, shape, mode, result] {
        std::lock_guard<std::mutex> lock(state->mutex);
        auto& model = *state->model;
        auto x =
            torch::from_blob(input->data, shape, torch::kFloat).to(model.detect().anchors.device());
        *result = amp_self_check(model, x, mode);
      },
      [result](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("maxDiff", result->max_xywhn_diff);
        o.Set("finite", result->finite);
        o.Set("rows", static_cast<double>(result->rows));
        return o;
      },
      "yolo5.ampCheck");
}

}  // namespace yolo5
