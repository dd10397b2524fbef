#include "addon/worker.h"

namespace yolo5 {

std::string describe_exception(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const c10::Error& err) {
    return err.what_without_backtrace();
  } catch (const std::exception& err) {
    return err.what();
  } catch (...) {
    return "unknown native error";
  }
}

TaskWorker::TaskWorker(Napi::Env env, Execute_ execute, Resolve resolve, const char* name,
                       Done done)
    : Napi::AsyncWorker(env, name),
      deferred_(Napi::Promise::Deferred::New(env)),
      execute_(std::move(execute)),
      resolve_(std::move(resolve)),
      done_(std::move(done)) {}

Napi::Promise TaskWorker::Queue(Napi::Env env, Execute_ execute, Resolve resolve, const char* name,
                                Done done) {
  auto* worker = new TaskWorker(env, std::move(execute), std::move(resolve), name, std::move(done));
  auto promise = worker->deferred_.Promise();
  worker->Napi::AsyncWorker::Queue();
  return promise;
}

void TaskWorker::Execute() {
  try {
    execute_();
  } catch (...) {
    SetError(describe_exception(std::current_exception()));
  }
}

void TaskWorker::OnOK() {
  try {
    deferred_.Resolve(resolve_(Env()));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (...) {
    deferred_.Reject(Napi::Error::New(Env(), describe_exception(std::current_exception())).Value());
  }
  finish();
}

void TaskWorker::OnError(const Napi::Error& e) {
  deferred_.Reject(e.Value());
  finish();
}

void TaskWorker::finish() {
  if (!done_) return;
  try {
    done_(Env());
  } catch (...) {
    // Bookkeeping after the promise settled has no caller left to tell.
  }
}

}  // namespace yolo5
