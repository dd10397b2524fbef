#include "train/profile.h"

#include <torch/version.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>
#include <vector>

// LibTorch 1.x's legacy profiler (its event list with push/pop pairs and sequence numbers). 2.x
// builds could not be compiled here, and 2.x moves the profiler's API from release to release:
// there YOLO5_PROFILE is refused with a clear error instead of guessed at.
#if TORCH_VERSION_MAJOR < 2 && __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define YOLO5_LEGACY_PROFILER 1
#endif

namespace yolo5 {

#ifdef YOLO5_LEGACY_PROFILER

namespace {

namespace prof = torch::autograd::profiler;

constexpr int kNoLayer = -1, kLossLayer = -2;

// One operator or scope: its matched push and pop on one thread.
struct Range {
  std::string name;
  uint8_t scope = 0;
  int64_t seq = -1;
  double start_us = 0, end_us = 0;
  int layer = kNoLayer;          // model.{i} (or the loss) this range runs inside
  std::string phase;             // the trainer's phase scope it runs inside
  bool first_level = false;      // directly inside a scope: the level the operator table counts
  bool nested_backward = false;  // inside another autograd node's range
  double ms() const { return (end_us - start_us) / 1000.0; }
};

bool is_user_scope(const Range& r) {
  return r.scope == static_cast<uint8_t>(at::RecordScope::USER_SCOPE);
}
bool is_backward_node(const Range& r) {
  return r.scope == static_cast<uint8_t>(at::RecordScope::BACKWARD_FUNCTION);
}

int layer_of(const std::string& name) {
  if (name == kLossScope) return kLossLayer;
  if (name.rfind("model.", 0) == 0) return std::atoi(name.c_str() + 6);
  return kNoLayer;
}

// Matches each thread's pushes and pops (by handle) into ranges that know their enclosing scopes.
std::vector<Range> ranges_of(const prof::thread_event_lists& lists) {
  std::vector<Range> out;
  for (const auto& events : lists) {
    std::vector<size_t> open;  // indices into out
    std::unordered_map<uint64_t, size_t> by_handle;
    for (const auto& e : events) {
      if (e.kind() == prof::EventKind::PushRange) {
        Range r;
        // The engine's wrapper around each node (its hooks included) would count it twice.
        if (std::string(e.name()).rfind("autograd::engine::evaluate_function", 0) == 0) continue;
        r.name = e.name();
        r.scope = e.scope();
        r.seq = e.sequenceNr();
        r.start_us = e.cpuUs();
        if (!open.empty()) {
          const auto& p = out[open.back()];
          r.layer = p.layer;
          r.phase = p.phase;
          r.first_level = is_user_scope(p);
          r.nested_backward = p.nested_backward || is_backward_node(p);
        }
        if (is_user_scope(r)) {
          if (layer_of(r.name) != kNoLayer) r.layer = layer_of(r.name);
          if (r.name.rfind("yolo5::", 0) == 0 && r.name != kLossScope) r.phase = r.name;
        }
        by_handle[e.handle()] = out.size();
        open.push_back(out.size());
        out.push_back(std::move(r));
      } else if (e.kind() == prof::EventKind::PopRange) {
        auto it = by_handle.find(e.handle());
        if (it == by_handle.end()) continue;
        out[it->second].end_us = e.cpuUs();
        while (!open.empty() && open.back() != it->second) open.pop_back();
        if (!open.empty()) open.pop_back();
        by_handle.erase(it);
      }
    }
  }
  return out;
}

std::string quoted(const std::string& s) {
  std::string q = "\"";
  for (char c : s) q += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return q + "\"";
}

struct Summary {
  std::map<std::string, double> phases;             // ms
  std::map<int, std::pair<double, double>> layers;  // forward ms, backward ms
  double unmapped_backward = 0;
  std::map<std::pair<std::string, std::string>, std::pair<double, int64_t>> ops;  // ms, calls
};

Summary summarize(const std::vector<Range>& ranges) {
  Summary s;
  std::unordered_map<int64_t, int> seq_layer;  // forward operator → its layer (or the loss)
  for (const auto& r : ranges)
    if (r.seq >= 0 && r.layer != kNoLayer && !is_backward_node(r) && !seq_layer.count(r.seq))
      seq_layer[r.seq] = r.layer;
  for (const auto& r : ranges) {
    if (is_user_scope(r)) {
      if (r.phase == r.name) s.phases[r.name] += r.ms();
      if (layer_of(r.name) != kNoLayer) s.layers[layer_of(r.name)].first += r.ms();
      continue;
    }
    if (is_backward_node(r) && !r.nested_backward) {
      auto it = seq_layer.find(r.seq);
      if (it == seq_layer.end()) {
        s.unmapped_backward += r.ms();
      } else {
        s.layers[it->second].second += r.ms();
      }
      auto& op = s.ops[{kBackwardScope, r.name}];
      op.first += r.ms();
      op.second += 1;
    } else if (r.first_level && !r.nested_backward) {
      auto& op = s.ops[{r.phase, r.name}];
      op.first += r.ms();
      op.second += 1;
    }
  }
  return s;
}

void write_summary(const std::string& path, const Summary& s, int64_t steps) {
  const double n = static_cast<double>(steps);
  std::ostringstream o;
  o << "{\"steps\":" << steps << ",\"phases\":{";
  bool first = true;
  for (const auto& [name, ms] : s.phases) {
    o << (first ? "" : ",") << quoted(name) << ":" << ms / n;
    first = false;
  }
  o << "},\"layers\":[";
  first = true;
  for (const auto& [layer, t] : s.layers) {
    o << (first ? "" : ",")
      << "{\"layer\":" << (layer == kLossLayer ? "\"loss\"" : std::to_string(layer))
      << ",\"forwardMs\":" << t.first / n << ",\"backwardMs\":" << t.second / n << "}";
    first = false;
  }
  o << "],\"unmappedBackwardMs\":" << s.unmapped_backward / n << ",\"ops\":[";
  first = true;
  for (const auto& [key, v] : s.ops) {
    o << (first ? "" : ",") << "{\"phase\":" << quoted(key.first)
      << ",\"name\":" << quoted(key.second) << ",\"ms\":" << v.first / n
      << ",\"calls\":" << static_cast<double>(v.second) / n << "}";
    first = false;
  }
  o << "]}\n";
  std::ofstream f(path);
  f << o.str();
  TORCH_CHECK(f.good(), "could not write the step profile to ", path);
}

}  // namespace

std::unique_ptr<StepProfiler> StepProfiler::from_env() {
  const char* path = std::getenv("YOLO5_PROFILE");
  if (path == nullptr || *path == 0) return nullptr;
  const char* steps = std::getenv("YOLO5_PROFILE_STEPS");
  const int64_t n = steps != nullptr ? std::max<int64_t>(1, std::atoll(steps)) : 3;
  return std::unique_ptr<StepProfiler>(new StepProfiler(path, n));
}

StepProfiler::~StepProfiler() {
  if (active_) prof::disableProfilerLegacy();
}

void StepProfiler::before_step(int64_t i) {
  if (done_ || active_ || i != warmup_) return;
  prof::enableProfilerLegacy(
      torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU));
  active_ = true;
}

void StepProfiler::after_step(int64_t i) {
  if (!active_ || i != warmup_ + steps_ - 1) return;
  auto lists = prof::disableProfilerLegacy();
  active_ = false;
  done_ = true;
  write_summary(path_, summarize(ranges_of(lists)), steps_);
}

#else  // LibTorch 2.x: no step profile

std::unique_ptr<StepProfiler> StepProfiler::from_env() {
  const char* path = std::getenv("YOLO5_PROFILE");
  TORCH_CHECK(path == nullptr || *path == 0,
              "YOLO5_PROFILE (the step profile) needs LibTorch 1.x's legacy profiler; this build "
              "is against LibTorch ",
              TORCH_VERSION, ": unset YOLO5_PROFILE");
  return nullptr;
}
StepProfiler::~StepProfiler() = default;
void StepProfiler::before_step(int64_t) {}
void StepProfiler::after_step(int64_t) {}

#endif

}  // namespace yolo5
