#pragma once
// Where a training step's time goes, per model layer, forward and backward: LibTorch's own
// profiler over a few steps of the first epoch, for scripts/bench (--profile). A developer tool,
// not an option: YOLO5_PROFILE=file.json turns it on (YOLO5_PROFILE_STEPS, default 3, after 2
// steps of warm-up), and the file gets, per step, each phase's, layer's and operator's
// milliseconds. Backward time is given to the layer whose forward operator made the autograd node
// (the profiler's sequence numbers link the two).
#include <torch/torch.h>

#include <memory>
#include <string>

namespace yolo5 {

class StepProfiler {
 public:
  // Null unless YOLO5_PROFILE names a file; with LibTorch 2.x it refuses YOLO5_PROFILE.
  static std::unique_ptr<StepProfiler> from_env();
  ~StepProfiler();

  // Around iteration i of the epoch: profiles from the warm-up's end until enough steps ran,
  // then writes the file (once per process).
  void before_step(int64_t i);
  void after_step(int64_t i);

 private:
  StepProfiler(std::string path, int64_t steps) : path_(std::move(path)), steps_(steps) {}
  std::string path_;
  int64_t warmup_ = 2, steps_;
  bool active_ = false, done_ = false;
};

// Scope names the summary looks for: the trainer's phases and the model's layers ("model.{i}").
inline constexpr const char* kForwardScope = "yolo5::forward";
inline constexpr const char* kLossScope = "yolo5::loss";
inline constexpr const char* kBackwardScope = "yolo5::backward";
inline constexpr const char* kOptimizerScope = "yolo5::optimizer";

}  // namespace yolo5
