// The training data loader: worker threads build augmented batches ahead of the training step,
// in a fixed order, with random draws seeded per (seed, epoch, sample) so runs repeat exactly.
#pragma once
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "data/augment.h"

namespace yolo5 {

struct Sample {
  std::string path;
  std::vector<std::array<float, 5>> labels;  // class, cx, cy, w, h (normalised)
  int width = 0, height = 0;                 // source size (for rect shapes)
};

// Every field is set by the caller (addon/convert.cpp); the defaults live in lib/.
struct LoaderOptions {
  int imgsz = 0;
  int batch = 0;
  int stride = 0;
  bool augment = false;
  bool rect = false;  // aspect-ratio batches, no mosaic, no shuffle
  bool shuffle = false;
  bool cache = false;  // keep resized images in memory
  int workers = 0;
  uint64_t seed = 0;
  // Data-parallel: this rank's shard of each epoch (world 1: everything). `batch` is per rank.
  int rank = 0, world = 1;
};

struct Batch {
  torch::Tensor images;   // uint8 (bs, 3, h, w) RGB
  torch::Tensor targets;  // float (n, 6): image index in batch, class, cx, cy, w, h (normalised)
  std::vector<int64_t> indices;
  std::vector<std::string> errors;  // samples that could not be read (replaced by others)
};

class Loader {
 public:
  Loader(std::vector<Sample> samples, LoaderOptions opts, AugmentHyp hyp);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t size() const { return static_cast<int64_t>(samples_.size()); }
  int64_t batches_per_epoch() const;
  // Starts producing the batches of `epoch`; `mosaic` false closes mosaic (last epochs).
  void start_epoch(int64_t epoch, bool mosaic);
  // The next batch in order, or nullopt when the epoch is done.
  std::optional<Batch> next();
  void stop();
  // --image-weights: the next epochs draw samples with these probabilities (with replacement).
  void set_sample_weights(std::vector<double> weights);
  // Bytes of decoded images kept by `cache` (0 without it).
  int64_t cache_bytes();

  // One augmented sample (for tests and benchmarks): image and labels (class, cx, cy, w, h).
  std::pair<Image, std::vector<std::array<float, 5>>> sample(int64_t index, int64_t epoch,
                                                             bool mosaic);

 private:
  std::shared_ptr<const Image> load_resized(int64_t i);
  std::pair<Image, std::vector<Box>> load_mosaic(int64_t index, Rng& rng);
  std::pair<Image, std::vector<Box>> load_letterboxed(int64_t index, int h, int w, Rng& rng);
  Batch make_batch(int64_t b);
  // Keeps this rank's part of order_ (as PyTorch's DistributedSampler takes it) and sets
  // batch_starts_.
  void shard();
  void worker();

  std::vector<Sample> samples_;
  LoaderOptions opts_;
  AugmentHyp hyp_;
  std::vector<std::pair<int, int>> batch_shapes_;  // rect: (h, w) per batch
  std::vector<int64_t> rect_order_;
  std::vector<double> sample_weights_;

  std::mutex cache_mutex_;
  std::vector<std::shared_ptr<const Image>> cache_;

  // Per-epoch production state.
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  std::vector<int64_t> order_;
  std::vector<int64_t> batch_starts_;  // batch b is order_[batch_starts_[b] … batch_starts_[b+1])
  std::map<int64_t, Batch> ready_;
  int64_t epoch_ = 0;
  bool mosaic_ = true;
  int64_t next_produce_ = 0, next_consume_ = 0, nb_ = 0;
  bool stopping_ = false;
};

}  // namespace yolo5
