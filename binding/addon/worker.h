// One AsyncWorker for every slow call: `execute` runs on a worker thread and never touches V8,
// `resolve` turns its results into JS values on the main thread, and `done` (optional) runs on
// the main thread after the promise settled either way (the end of a Lifetime call).
#pragma once
#include <napi.h>

#include <functional>
#include <string>

namespace yolo5 {

// The message of any C++ exception, c10::Error without its backtrace.
std::string describe_exception(std::exception_ptr e);

class TaskWorker : public Napi::AsyncWorker {
 public:
  using Execute_ = std::function<void()>;
  using Resolve = std::function<Napi::Value(Napi::Env)>;
  using Done = std::function<void(Napi::Env)>;

  static Napi::Promise Queue(Napi::Env env, Execute_ execute, Resolve resolve, const char* name,
                             Done done = nullptr);

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  TaskWorker(Napi::Env env, Execute_ execute, Resolve resolve, const char* name, Done done);
  void finish();
  Napi::Promise::Deferred deferred_;
  Execute_ execute_;
  Resolve resolve_;
  Done done_;
};

// Runs `body`, turning any C++ exception into a thrown JS Error.
template <typename F>
auto guarded(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw Napi::Error::New(env, describe_exception(std::current_exception()));
  }
}

}  // namespace yolo5
