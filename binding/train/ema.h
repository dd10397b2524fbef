// The exponential moving average of a model's weights that validation and checkpoints use:
// decay 0.9999 · (1 − e^(−updates / 2000)), so early updates follow the model closely.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

#include "model/yolo.h"

namespace yolo5 {

class ModelEma {
 public:
  ModelEma(std::shared_ptr<YoloModelImpl> ema, int64_t updates)
      : ema_(std::move(ema)), updates_(updates) {}
  // One update after an optimizer step (under no_grad).
  void update(YoloModelImpl& model);
  // Atomic: read on the event loop while an epoch updates it.
  int64_t updates() const { return updates_.load(); }
  void set_updates(int64_t u) { updates_.store(u); }

 private:
  std::shared_ptr<YoloModelImpl> ema_;
  std::atomic<int64_t> updates_{0};
};

}  // namespace yolo5
