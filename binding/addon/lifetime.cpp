#include "addon/lifetime.h"

#include <atomic>

namespace yolo5 {

namespace {
// Every report and dispose happens on the main thread, so a plain counter would do; atomic keeps
// it correct should a worker thread ever read it.
std::atomic<int64_t> g_reported{0};
}  // namespace

int64_t Lifetime::total_reported() { return g_reported.load(); }

Napi::Error coded_error(Napi::Env env, const char* code, const std::string& message) {
  auto e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

void Lifetime::check(Napi::Env env) const {
  if (disposed_)
    throw coded_error(env, "E_DISPOSED", "this " + what_ + " was disposed; it cannot be used");
}

void Lifetime::begin(Napi::Env env) {
  check(env);
  ++in_flight_;
}

void Lifetime::end(Napi::Env env) {
  --in_flight_;
  release_if_idle(env);
}

void Lifetime::report(Napi::Env env, int64_t bytes) {
  if (disposed_ || bytes == reported_) return;
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes - reported_);
  g_reported += bytes - reported_;
  reported_ = bytes;
}

void Lifetime::add_dependent(std::function<void(Napi::Env)> on_dispose) {
  dependents_.push_back(std::move(on_dispose));
}

void Lifetime::dispose(Napi::Env env) {
  if (disposed_) return;
  disposed_ = true;
  if (reported_ != 0) Napi::MemoryManagement::AdjustExternalMemory(env, -reported_);
  g_reported -= reported_;
  reported_ = 0;
  auto dependents = std::move(dependents_);
  for (auto& d : dependents) d(env);
  release_if_idle(env);
}

void Lifetime::release_if_idle(Napi::Env env) {
  if (!disposed_ || in_flight_ > 0 || !release_) return;
  auto release = std::move(release_);
  release_ = nullptr;
  release();
}

}  // namespace yolo5
