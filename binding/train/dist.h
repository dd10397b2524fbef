// Distributed data-parallel training on PyTorch's c10d: a TCPStore at MASTER_ADDR:MASTER_PORT
// (rank 0 hosts it), a Gloo process group (CPU) or NCCL (CUDA, where the LibTorch has it), and
// gradients averaged in buckets over the trainable parameters only. TypeScript decides who
// does what (lib/train/dist.ts); this file only communicates. Every failure is a DistError whose
// message starts "DDP rank R of N (store ADDR:PORT)".
#pragma once
#include <torch/torch.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/bn_act.h"

namespace yolo5 {

// Every field is set by the caller (addon/convert.cpp from what lib/train/dist.ts resolved).
struct DistOptions {
  int rank = 0, world = 0, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  int64_t timeout_ms = 0;  // rendezvous and every collective
  std::string backend;     // "gloo" or "nccl"
};

class DistError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Whether this build links c10d (Gloo headers were found) and NCCL.
bool dist_available();
bool nccl_available();

class DistGroup {
 public:
  // Rendezvous: blocks until every rank has joined, or fails after the timeout.
  static std::shared_ptr<DistGroup> join(const DistOptions& o);
  ~DistGroup();
  DistGroup(const DistGroup&) = delete;
  DistGroup& operator=(const DistGroup&) = delete;

  int rank() const;
  int world() const;
  const std::string& backend() const;
  // "DDP rank R of N (store ADDR:PORT)": how every message of this group starts.
  std::string who() const;

  // Rank 0's values into every rank's tensors (in place, any strides, one flat message per dtype).
  void broadcast(const std::vector<torch::Tensor>& tensors);
  // Sums over the ranks, in place (a contiguous tensor on the group's device).
  void all_reduce(torch::Tensor& t, const char* what);
  // Every rank's flags, or-ed (one small all-reduce).
  std::vector<bool> any(const std::vector<bool>& flags, const char* what);
  // Small payloads through the store: get waits (up to the timeout) until some rank set the key.
  void set(const std::string& key, const std::string& value);
  std::string get(const std::string& key);
  void barrier();

  // Runs `fn`, turning any exception into a DistError naming this rank, the store and `what`.
  template <typename F>
  auto guard(const char* what, F&& fn) -> decltype(fn()) {
    try {
      return fn();
    } catch (const DistError&) {
      throw;
    } catch (const std::exception& e) {
      fail(what, e);
    }
  }

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  explicit DistGroup(std::unique_ptr<Impl> impl);
  [[noreturn]] void fail(const char* what, const std::exception& e) const;
  std::unique_ptr<Impl> impl_;
};

// Gradient averaging for one model over its trainable parameters only (frozen ones are never
// sent): buckets of ~25 MB (1 MB first), the last layers' first, each all-reduced as soon as its
// gradients are in, while backward still runs (DDP's scheme; see dist.cpp for why not its Reducer).
class GradientSync {
 public:
  GradientSync(std::shared_ptr<DistGroup> group,
               std::vector<std::pair<std::string, torch::Tensor>> trainable);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Around each backward whose gradients are to be averaged: finish waits for every bucket and
  // adds the averages into the parameters' gradients.
  void before_backward();
  void finish_backward();
  // Bytes the last backward all-reduced (gradients, float32), and how many buckets.
  int64_t last_bytes() const;
  int64_t buckets() const;
  const std::vector<std::string>& names() const { return names_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<std::string> names_;
};

// --sync-bn: BatchNorm batch sums over the group (the kernels' hook).
class GroupChannelSums : public ChannelSumsReducer {
 public:
  explicit GroupChannelSums(std::shared_ptr<DistGroup> group) : group_(std::move(group)) {}
  void sum(std::vector<double>& values) override;

 private:
  std::shared_ptr<DistGroup> group_;
};

}  // namespace yolo5
