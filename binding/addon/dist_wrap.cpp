#include "addon/dist_wrap.h"

#include "addon/convert.h"
#include "addon/model_wrap.h"
#include "addon/worker.h"

namespace yolo5 {

namespace {

// Tells a NativeProcessGroup apart from every other wrapped object.
constexpr napi_type_tag kGroupTag = {0x79b2c7d15a0e4f31ULL, 0x9d6e2a4b8c1f3e57ULL};

struct GroupState {
  std::shared_ptr<DistGroup> group;  // set once join() resolved
  bool joining = false;
};

DistOptions to_dist_options(const Napi::Value& v) {
  Fields o(v, "NativeProcessGroup.join options");
  DistOptions d;
  d.rank = static_cast<int>(o.integer("rank"));
  d.world = static_cast<int>(o.integer("worldSize"));
  d.local_rank = static_cast<int>(o.integer("localRank"));
  d.master_addr = o.string("masterAddr");
  d.master_port = static_cast<int>(o.integer("masterPort"));
  d.timeout_ms = static_cast<int64_t>(o.number("timeout") * 1000);
  d.backend = o.string("backend");
  if (d.world < 1 || d.rank < 0 || d.rank >= d.world || d.master_port < 1 ||
      d.master_port > 65535 || d.timeout_ms < 1 || (d.backend != "gloo" && d.backend != "nccl"))
    throw Napi::RangeError::New(v.Env(), "NativeProcessGroup.join: inconsistent options");
  return d;
}

class GroupWrap : public Napi::ObjectWrap<GroupWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "NativeProcessGroup",
        {InstanceMethod<&GroupWrap::Join>("join"), InstanceMethod<&GroupWrap::Info>("info"),
         InstanceMethod<&GroupWrap::Set>("set"), InstanceMethod<&GroupWrap::Get>("get"),
         InstanceMethod<&GroupWrap::Barrier>("barrier"),
         InstanceMethod<&GroupWrap::Broadcast>("broadcastModel"),
         InstanceMethod<&GroupWrap::Leave>("leave")});
  }

  explicit GroupWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GroupWrap>(info) {
    info.This().As<Napi::Object>().TypeTag(&kGroupTag);
    state_ = std::make_shared<GroupState>();
  }

  static std::shared_ptr<GroupState> StateOf(const Napi::Value& v, const std::string& where) {
    if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kGroupTag))
      throw type_error(v, where, "a NativeProcessGroup");
    return Unwrap(v.As<Napi::Object>())->state_;
  }

 private:
  std::shared_ptr<DistGroup> joined(Napi::Env env) const {
    if (!state_->group) throw Napi::Error::New(env, "NativeProcessGroup: not joined (or left)");
    return state_->group;
  }

  // join({ rank, worldSize, localRank, masterAddr, masterPort, timeout (s), backend }) → Promise
  Napi::Value Join(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    if (info.Length() != 1) throw Napi::TypeError::New(env, "join(options)");
    if (state_->group || state_->joining)
      throw Napi::Error::New(env, "NativeProcessGroup: already joined");
    auto opts = to_dist_options(info[0]);
    auto state = state_;
    auto result = std::make_shared<std::shared_ptr<DistGroup>>();
    state->joining = true;
    return TaskWorker::Queue(
        env, [opts, result] { *result = DistGroup::join(opts); },
        [state, result](Napi::Env env) -> Napi::Value {
          state->group = *result;
          return env.Undefined();
        },
        "yolo5.joinGroup", [state](Napi::Env) { state->joining = false; });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    auto g = joined(env);
    auto o = Napi::Object::New(env);
    o.Set("rank", g->rank());
    o.Set("worldSize", g->world());
    o.Set("backend", g->backend());
    o.Set("who", g->who());
    return o;
  }

  // set(key, value) → Promise<void>; get(key) → Promise<string> (waits up to the timeout).
  Napi::Value Set(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    if (info.Length() != 2 || !info[0].IsString() || !info[1].IsString())
      throw Napi::TypeError::New(env, "set(key: string, value: string)");
    auto g = joined(env);
    auto key = info[0].As<Napi::String>().Utf8Value();
    auto value = std::make_shared<std::string>(info[1].As<Napi::String>().Utf8Value());
    return TaskWorker::Queue(
        env, [g, key, value] { g->set(key, *value); },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, "yolo5.groupSet");
  }

  Napi::Value Get(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    if (info.Length() != 1 || !info[0].IsString())
      throw Napi::TypeError::New(env, "get(key: string)");
    auto g = joined(env);
    auto key = info[0].As<Napi::String>().Utf8Value();
    auto value = std::make_shared<std::string>();
    return TaskWorker::Queue(
        env, [g, key, value] { *value = g->get(key); },
        [value](Napi::Env env) -> Napi::Value { return Napi::String::New(env, *value); },
        "yolo5.groupGet");
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    auto g = joined(info.Env());
    return TaskWorker::Queue(
        info.Env(), [g] { g->barrier(); },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, "yolo5.groupBarrier");
  }

  // broadcastModel(model) → Promise<void>: rank 0's parameters and buffers on every rank.
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    if (info.Length() != 1 || !info[0].IsObject())
      throw Napi::TypeError::New(env, "broadcastModel(model: NativeModel)");
    auto g = joined(env);
    auto model = ModelWrap::StateOf(info[0].As<Napi::Object>());
    // Anchors may change (rank 0 ran autoanchor): the model's listing is published again.
    PendingListing listing = std::make_shared<std::optional<ModelListing>>();
    return queue_on_models(
        env, {model},
        [g, model, listing] {
          std::lock_guard<std::mutex> lock(model->mutex);
          std::vector<torch::Tensor> tensors;
          for (const auto& p : model->model->named_parameters()) tensors.push_back(p.value());
          for (const auto& b : model->model->named_buffers()) tensors.push_back(b.value());
          g->broadcast(tensors);
          *listing = list_model(*model->model);
        },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, "yolo5.broadcastModel",
        {listing});
  }

  // leave(): this rank's connections close once nothing uses them (a trainer may still).
  Napi::Value Leave(const Napi::CallbackInfo& info) {
    state_->group.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<GroupState> state_;
};

}  // namespace

Napi::Function DefineProcessGroup(Napi::Env env) { return GroupWrap::Define(env); }

std::shared_ptr<DistGroup> GroupOf(const Napi::Value& value, const std::string& where) {
  auto state = GroupWrap::StateOf(value, where);
  if (!state->group) throw type_error(value, where, "a joined NativeProcessGroup");
  return state->group;
}

}  // namespace yolo5
