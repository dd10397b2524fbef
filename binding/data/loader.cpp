#include "data/loader.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace yolo5 {

namespace {

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

Rng rng_for(uint64_t seed, int64_t epoch, int64_t salt) {
  return Rng(mix(mix(mix(seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(salt)));
}

// Normalised (class, cx, cy, w, h) → pixel boxes for an image of w×h placed at (padw, padh).
std::vector<Box> to_pixels(const std::vector<std::array<float, 5>>& labels, double w, double h,
                           double padw, double padh) {
  std::vector<Box> out;
  for (const auto& l : labels) {
    out.push_back({l[0], static_cast<float>(w * (l[1] - l[3] / 2) + padw),
                   static_cast<float>(h * (l[2] - l[4] / 2) + padh),
                   static_cast<float>(w * (l[1] + l[3] / 2) + padw),
                   static_cast<float>(h * (l[2] + l[4] / 2) + padh)});
  }
  return out;
}

}  // namespace

Loader::Loader(std::vector<Sample> samples, LoaderOptions opts, AugmentHyp hyp)
    : samples_(std::move(samples)), opts_(opts), hyp_(hyp), cache_(samples_.size()) {
  TORCH_CHECK(!samples_.empty(), "the data set is empty");
  TORCH_CHECK(opts_.batch >= 1 && opts_.imgsz >= opts_.stride, "bad loader options");
  TORCH_CHECK(opts_.world >= 1 && opts_.rank >= 0 && opts_.rank < opts_.world,
              "bad loader shard: rank ", opts_.rank, " of ", opts_.world);
  if (opts_.rect) {
    // Aspect-ratio batches, as val forms them (pad 0 for training).
    rect_order_.resize(samples_.size());
    std::iota(rect_order_.begin(), rect_order_.end(), 0);
    std::stable_sort(rect_order_.begin(), rect_order_.end(), [&](int64_t a, int64_t b) {
      return static_cast<double>(samples_[a].height) / samples_[a].width <
             static_cast<double>(samples_[b].height) / samples_[b].width;
    });
    for (size_t s = 0; s < rect_order_.size(); s += opts_.batch) {
      double mini = 1e30, maxi = 0;
      for (size_t k = s; k < std::min(rect_order_.size(), s + opts_.batch); ++k) {
        const auto& sm = samples_[rect_order_[k]];
        double ar = static_cast<double>(sm.height) / sm.width;
        mini = std::min(mini, ar);
        maxi = std::max(maxi, ar);
      }
      double sh = 1, sw = 1;
      if (maxi < 1)
        sh = maxi;
      else if (mini > 1)
        sw = 1 / mini;
      batch_shapes_.emplace_back(
          static_cast<int>(std::ceil(sh * opts_.imgsz / opts_.stride)) * opts_.stride,
          static_cast<int>(std::ceil(sw * opts_.imgsz / opts_.stride)) * opts_.stride);
    }
  }
}

Loader::~Loader() { stop(); }

int64_t Loader::batches_per_epoch() const {
  const int64_t per_rank = (size() + opts_.world - 1) / opts_.world;
  if (opts_.world > 1 && opts_.rect) {
    // Whole shape batches per rank, their count padded to a multiple of the world size.
    const int64_t shapes = static_cast<int64_t>(batch_shapes_.size());
    return (shapes + opts_.world - 1) / opts_.world;
  }
  return (per_rank + opts_.batch - 1) / opts_.batch;
}

void Loader::shard() {
  const int64_t W = opts_.world, B = opts_.batch, n = static_cast<int64_t>(order_.size());
  std::vector<int64_t> out;
  batch_starts_.assign(1, 0);
  if (W > 1 && opts_.rect) {
    // Whole shape batches (one shape each): rank r takes batches r, r + W, …, padded from the
    // start so that every rank has as many.
    const int64_t shapes = (n + B - 1) / B, per = (shapes + W - 1) / W;
    for (int64_t k = 0; k < per; ++k) {
      const int64_t b = (k * W + opts_.rank) % shapes;
      for (int64_t j = b * B; j < std::min(n, (b + 1) * B); ++j) out.push_back(order_[j]);
      batch_starts_.push_back(static_cast<int64_t>(out.size()));
    }
    order_ = std::move(out);
    return;
  }
  if (W > 1) {
    // Padded to a multiple of W with the order's first indices, then every W-th from the rank's.
    const int64_t total = (n + W - 1) / W * W;
    for (int64_t j = opts_.rank; j < total; j += W) out.push_back(order_[j % n]);
    order_ = std::move(out);
  }
  const int64_t m = static_cast<int64_t>(order_.size());
  for (int64_t s = B; s < m + B; s += B) batch_starts_.push_back(std::min(s, m));
}

std::shared_ptr<const Image> Loader::load_resized(int64_t i) {
  if (opts_.cache) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_[i]) return cache_[i];
  }
  Image img = read_image(samples_[i].path);
  double r = static_cast<double>(opts_.imgsz) / std::max(img.width, img.height);
  if (r != 1) {
    img = resize_image(img, static_cast<int>(std::ceil(img.width * r)),
                       static_cast<int>(std::ceil(img.height * r)),
                       opts_.augment || r > 1 ? Interp::Linear : Interp::Area);
  }
  auto shared = std::make_shared<const Image>(std::move(img));
  if (opts_.cache) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    cache_[i] = shared;
  }
  return shared;
}

std::pair<Image, std::vector<Box>> Loader::load_mosaic(int64_t index, Rng& rng) {
  const int s = opts_.imgsz;
  const int yc = static_cast<int>(uniform(rng, s / 2.0, 1.5 * s)),
            xc = static_cast<int>(uniform(rng, s / 2.0, 1.5 * s));
  std::vector<int64_t> idx{index};
  std::uniform_int_distribution<int64_t> pick(0, size() - 1);
  for (int k = 0; k < 3; ++k) idx.push_back(pick(rng));
  std::shuffle(idx.begin(), idx.end(), rng);
  Image canvas;
  canvas.width = canvas.height = 2 * s;
  canvas.pixels.assign(static_cast<size_t>(4) * s * s * 3, 114);
  std::vector<Box> boxes;
  for (int k = 0; k < 4; ++k) {
    auto img = load_resized(idx[k]);
    const int w = img->width, h = img->height;
    int x1a, y1a, x2a, y2a, x1b, y1b, x2b, y2b;
    if (k == 0) {  // top left of the centre
      x1a = std::max(xc - w, 0), y1a = std::max(yc - h, 0), x2a = xc, y2a = yc;
      x1b = w - (x2a - x1a), y1b = h - (y2a - y1a), x2b = w, y2b = h;
    } else if (k == 1) {  // top right
      x1a = xc, y1a = std::max(yc - h, 0), x2a = std::min(xc + w, 2 * s), y2a = yc;
      x1b = 0, y1b = h - (y2a - y1a), x2b = std::min(w, x2a - x1a), y2b = h;
    } else if (k == 2) {  // bottom left
      x1a = std::max(xc - w, 0), y1a = yc, x2a = xc, y2a = std::min(2 * s, yc + h);
      x1b = w - (x2a - x1a), y1b = 0, x2b = w, y2b = std::min(y2a - y1a, h);
    } else {  // bottom right
      x1a = xc, y1a = yc, x2a = std::min(xc + w, 2 * s), y2a = std::min(2 * s, yc + h);
      x1b = 0, y1b = 0, x2b = std::min(w, x2a - x1a), y2b = std::min(y2a - y1a, h);
    }
    for (int y = 0; y < y2a - y1a; ++y)
      std::copy_n(img->at(x1b, y1b + y), static_cast<size_t>(x2b - x1b) * 3,
                  canvas.at(x1a, y1a + y));
    auto b = to_pixels(samples_[idx[k]].labels, w, h, x1a - x1b, y1a - y1b);
    boxes.insert(boxes.end(), b.begin(), b.end());
  }
  for (auto& b : boxes)
    for (int j = 1; j < 5; ++j) b[j] = std::clamp(b[j], 0.f, 2.f * s);
  random_perspective(canvas, boxes, hyp_, -s / 2, -s / 2, rng);
  return {std::move(canvas), std::move(boxes)};
}

std::pair<Image, std::vector<Box>> Loader::load_letterboxed(int64_t index, int h, int w, Rng& rng) {
  auto img = load_resized(index);
  auto lb = letterbox(*img, h, w, false, opts_.augment, opts_.stride);
  auto boxes = to_pixels(samples_[index].labels, img->width * lb.ratio, img->height * lb.ratio,
                         lb.pad_w, lb.pad_h);
  Image out = std::move(lb.image);
  if (opts_.augment) random_perspective(out, boxes, hyp_, 0, 0, rng);
  return {std::move(out), std::move(boxes)};
}

std::pair<Image, std::vector<std::array<float, 5>>> Loader::sample(int64_t index, int64_t epoch,
                                                                   bool mosaic) {
  auto rng = rng_for(opts_.seed, epoch, index);
  std::pair<Image, std::vector<Box>> r;
  int h = opts_.imgsz, w = opts_.imgsz;
  if (opts_.rect) {
    auto pos = std::find(rect_order_.begin(), rect_order_.end(), index) - rect_order_.begin();
    std::tie(h, w) = batch_shapes_[pos / opts_.batch];
  }
  const bool use_mosaic =
      opts_.augment && !opts_.rect && mosaic && uniform(rng, 0, 1) < hyp_.mosaic;
  if (use_mosaic) {
    r = load_mosaic(index, rng);
    if (uniform(rng, 0, 1) < hyp_.mixup) {
      std::uniform_int_distribution<int64_t> pick(0, size() - 1);
      auto other = load_mosaic(pick(rng), rng);
      mixup(r.first, r.second, other.first, other.second, rng);
    }
  } else {
    r = load_letterboxed(index, h, w, rng);
  }
  auto& img = r.first;
  auto& boxes = r.second;
  if (opts_.augment) {
    augment_hsv(img, hyp_, rng);
    if (uniform(rng, 0, 1) < hyp_.flipud) flip_ud(img, boxes);
    if (uniform(rng, 0, 1) < hyp_.fliplr) flip_lr(img, boxes);
  }
  // Normalised centre/size, clipped just inside the image.
  std::vector<std::array<float, 5>> labels;
  const float eps = 1e-3f, W = static_cast<float>(img.width), H = static_cast<float>(img.height);
  for (auto& b : boxes) {
    float x1 = std::clamp(b[1], 0.f, W - eps), x2 = std::clamp(b[3], 0.f, W - eps);
    float y1 = std::clamp(b[2], 0.f, H - eps), y2 = std::clamp(b[4], 0.f, H - eps);
    labels.push_back({b[0], (x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H});
  }
  return {std::move(img), std::move(labels)};
}

Batch Loader::make_batch(int64_t b) {
  Batch batch;
  const int64_t start = batch_starts_[b], end = batch_starts_[b + 1];
  std::vector<Image> images;
  std::vector<float> targets;
  for (int64_t k = start; k < end; ++k) {
    int64_t index = order_[k];
    std::pair<Image, std::vector<std::array<float, 5>>> s;
    // An unreadable file is reported and replaced by the next readable one (the set was verified
    // before training, so this is a file that changed on disk).
    for (int64_t attempt = 0; attempt < size(); ++attempt) {
      try {
        s = sample(index, epoch_, mosaic_);
        break;
      } catch (const std::exception& e) {
        batch.errors.push_back(e.what());
        index = (index + 1) % size();
      }
    }
    if (s.first.pixels.empty()) throw std::runtime_error("no readable image in the data set");
    batch.indices.push_back(index);
    const float bi = static_cast<float>(images.size());
    for (auto& l : s.second) targets.insert(targets.end(), {bi, l[0], l[1], l[2], l[3], l[4]});
    images.push_back(std::move(s.first));
  }
  const int h = images[0].height, w = images[0].width;
  batch.images = torch::empty({static_cast<int64_t>(images.size()), h, w, 3}, torch::kUInt8);
  for (size_t i = 0; i < images.size(); ++i) {
    TORCH_CHECK(images[i].height == h && images[i].width == w, "batch images differ in size");
    std::memcpy(batch.images[static_cast<int64_t>(i)].data_ptr(), images[i].pixels.data(),
                images[i].pixels.size());
  }
  // (batch, 3, h, w) over NHWC memory, i.e. channels-last: the trainer picks the layout it runs in.
  batch.images = batch.images.permute({0, 3, 1, 2});
  batch.targets =
      torch::from_blob(targets.data(), {static_cast<int64_t>(targets.size() / 6), 6}, torch::kFloat)
          .clone();
  return batch;
}

void Loader::worker() {
  for (;;) {
    int64_t b;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // Stay at most a few batches ahead of the consumer.
      const int64_t ahead = std::max(2, opts_.workers) * 2;
      cv_.wait(lock, [&] {
        return stopping_ || next_produce_ >= nb_ || next_produce_ < next_consume_ + ahead;
      });
      if (stopping_ || next_produce_ >= nb_) return;
      b = next_produce_++;
    }
    Batch batch;
    try {
      batch = make_batch(b);
    } catch (const std::exception& e) {
      batch.errors.push_back(std::string("fatal: ") + e.what());
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(b, std::move(batch));
    }
    cv_.notify_all();
  }
}

void Loader::start_epoch(int64_t epoch, bool mosaic) {
  stop();
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = false;
  epoch_ = epoch;
  mosaic_ = mosaic;
  if (opts_.rect) {
    order_ = rect_order_;
  } else {
    order_.resize(samples_.size());
    std::iota(order_.begin(), order_.end(), 0);
    auto rng = rng_for(opts_.seed, epoch, -1);
    if (!sample_weights_.empty()) {
      std::discrete_distribution<int64_t> pick(sample_weights_.begin(), sample_weights_.end());
      for (auto& o : order_) o = pick(rng);
    } else if (opts_.shuffle) {
      std::shuffle(order_.begin(), order_.end(), rng);
    }
  }
  shard();
  nb_ = static_cast<int64_t>(batch_starts_.size()) - 1;
  next_produce_ = next_consume_ = 0;
  ready_.clear();
  for (int i = 0; i < std::max(1, opts_.workers); ++i) threads_.emplace_back([this] { worker(); });
}

std::optional<Batch> Loader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (next_consume_ >= nb_) return std::nullopt;
  cv_.wait(lock, [&] { return stopping_ || ready_.count(next_consume_) > 0; });
  if (stopping_) return std::nullopt;
  auto node = ready_.extract(next_consume_++);
  lock.unlock();
  cv_.notify_all();
  auto& batch = node.mapped();
  for (auto& e : batch.errors) {
    if (e.rfind("fatal: ", 0) == 0) throw std::runtime_error(e.substr(7));
  }
  return std::move(batch);
}

void Loader::set_sample_weights(std::vector<double> weights) {
  TORCH_CHECK(weights.empty() || weights.size() == samples_.size(), "sample weights: expected ",
              samples_.size(), " values, got ", weights.size());
  TORCH_CHECK(!opts_.rect || weights.empty(), "image weights do not combine with rect batches");
  std::lock_guard<std::mutex> lock(mutex_);
  sample_weights_ = std::move(weights);
}

int64_t Loader::cache_bytes() {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  int64_t bytes = 0;
  for (const auto& img : cache_)
    if (img) bytes += static_cast<int64_t>(img->pixels.size());
  return bytes;
}

void Loader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace yolo5
