// The life of one native object that JavaScript holds (a model, a trainer), kept on the main
// thread only: calls in flight, disposal, and the bytes V8 was told it holds.
//
// dispose() never waits: it marks the object disposed at once (every later call is an E_DISPOSED
// error) and frees the native memory now when nothing is running, else when the last call in
// flight completes. Finalization by the garbage collector is a dispose.
#pragma once
#include <napi.h>

#include <functional>
#include <string>
#include <vector>

namespace yolo5 {

// A JS Error with a `code` property (E_DISPOSED, E_BUSY) that lib/native/addon.ts maps to a
// Yolo5Error of that code.
Napi::Error coded_error(Napi::Env env, const char* code, const std::string& message);

class Lifetime {
 public:
  explicit Lifetime(std::string what) : what_(std::move(what)) {}

  bool disposed() const { return disposed_; }
  bool busy() const { return in_flight_ > 0; }
  // Throws E_DISPOSED when disposed.
  void check(Napi::Env env) const;
  // A call starts (checks first); `end` when it has completed, resolved or rejected.
  void begin(Napi::Env env);
  void end(Napi::Env env);
  // Tells V8 this object now holds `bytes` of native memory (the difference to the last report);
  // ignored once disposed.
  void report(Napi::Env env, int64_t bytes);
  // What freeing means (run once, on the main thread); dependents run when disposal starts.
  void set_release(std::function<void()> release) { release_ = std::move(release); }
  void add_dependent(std::function<void(Napi::Env)> on_dispose);
  void dispose(Napi::Env env);
  // The bytes all live objects have reported: this addon's share of V8's external-memory total,
  // which also counts Node's own buffers (and so moves whenever a GC frees one).
  static int64_t total_reported();

 private:
  void release_if_idle(Napi::Env env);

  std::string what_;
  int in_flight_ = 0;
  bool disposed_ = false;
  int64_t reported_ = 0;
  std::function<void()> release_;
  std::vector<std::function<void(Napi::Env)>> dependents_;
};

}  // namespace yolo5
