#include "train/dist.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <regex>

#if YOLO5_HAVE_C10D
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
// The c10d headers compile their Gloo and NCCL parts only with these (PyTorch's build sets them).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <c10/util/Logging.h>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if YOLO5_HAVE_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

namespace yolo5 {

namespace {

// An exception's message on one line, without c10's backtrace or Gloo's "[file.cc:123] " prefix.
std::string one_line(const std::exception& e) {
  std::string m = e.what();
  if (auto* c = dynamic_cast<const c10::Error*>(&e)) m = c->what_without_backtrace();
  static const std::regex where(R"(\[[^\]\s]+\.(cc|cpp|h|hpp):\d+\]\s*)");
  m = std::regex_replace(m, where, "");
  std::replace(m.begin(), m.end(), '\n', ' ');
  while (!m.empty() && (m.back() == ' ' || m.back() == '.')) m.pop_back();
  return m;
}

std::string seconds(int64_t ms) {
  return std::to_string(ms / 1000) + (ms % 1000 ? "." + std::to_string(ms % 1000 / 100) : "") +
         " s";
}

}  // namespace

#if YOLO5_HAVE_C10D

struct DistGroup::Impl {
  DistOptions opts;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  torch::Device device{torch::kCPU};
};

namespace {

using ms = std::chrono::milliseconds;

// The local address this host uses to reach `host` (a UDP "connect" sends nothing): Gloo binds
// there, so that ranks on other hosts can reach it even where the host name resolves to loopback.
std::string local_address_towards(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), "9", &hints, &res) != 0 || !res) return "";
  std::string out;
  int fd = socket(res->ai_family, SOCK_DGRAM, 0);
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    char buf[INET6_ADDRSTRLEN] = {0};
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      const void* a =
          local.ss_family == AF_INET6
              ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
              : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
      if (inet_ntop(local.ss_family, a, buf, sizeof buf)) out = buf;
    }
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  return out;
}

// GLOO_SOCKET_IFNAME names an interface as in PyTorch; else the address towards the store.
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  const auto local = local_address_towards(master_addr);
  if (!local.empty()) return c10d::ProcessGroupGloo::createDeviceForHostname(local);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

// What a failed rendezvous means, in the user's words.
std::string rendezvous_problem(const DistOptions& o, const std::string& raw) {
  const auto port = std::to_string(o.master_port);
  if (raw.find("Address already in use") != std::string::npos ||
      raw.find("errno: 98") != std::string::npos)
    return "MASTER_PORT " + port +
           " is in use on this host (another run or program holds it); "
           "choose another MASTER_PORT (" +
           raw + ")";
  if (o.rank == 0)
    return "not every rank joined the store within " + seconds(o.timeout_ms) + " (" + raw + ")";
  return "could not reach the store that rank 0 hosts at " + o.master_addr + ":" + port +
         " within " + seconds(o.timeout_ms) + " (" + raw + ")";
}

c10::intrusive_ptr<c10d::ProcessGroup> make_group(const DistOptions& o,
                                                  const c10::intrusive_ptr<c10d::Store>& store) {
  if (o.backend == "nccl") {
#if YOLO5_HAVE_NCCL
    // The collective timeout applies to NCCL only with blocking waits.
    setenv("NCCL_BLOCKING_WAIT", "1", 0);
    auto nopts = c10d::ProcessGroupNCCL::Options::create();
    nopts->timeout = ms(o.timeout_ms);
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, o.rank, o.world, nopts);
#else
    throw DistError(
        "this build has no NCCL (the LibTorch it was built against has no CUDA + NCCL)");
#endif
  }
  auto gopts = c10d::ProcessGroupGloo::Options::create(ms(o.timeout_ms));
  gopts->devices.push_back(gloo_device(o.master_addr));
  gopts->threads = 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, o.rank, o.world, gopts);
}

}  // namespace

bool dist_available() { return true; }
bool nccl_available() { return YOLO5_HAVE_NCCL != 0; }

// c10d and Gloo log their socket troubles to stderr as they happen; each failure reaches the
// user once, as the one-line DistError that carries the same words.
static void quiet_c10d_logging() {
#ifdef C10_USE_GLOG
  FLAGS_minloglevel = 3;
#else
  FLAGS_caffe2_log_level = 3;
#endif
}

std::shared_ptr<DistGroup> DistGroup::join(const DistOptions& o) {
  quiet_c10d_logging();
  auto impl = std::make_unique<Impl>();
  impl->opts = o;
  if (o.backend == "nccl") impl->device = torch::Device(torch::kCUDA, o.local_rank);
  std::shared_ptr<DistGroup> group(new DistGroup(std::move(impl)));
  auto& im = group->impl();
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(o.master_port);
    so.isServer = o.rank == 0;
    so.numWorkers = static_cast<std::size_t>(o.world);
    so.waitWorkers = true;
    so.timeout = ms(o.timeout_ms);
    im.store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
  } catch (const std::exception& e) {
    throw DistError(group->who() + ": rendezvous failed: " + rendezvous_problem(o, one_line(e)));
  }
  group->guard("joining the process group", [&] {
    im.pg = make_group(o, im.store);
    return 0;
  });
  return group;
}

DistGroup::DistGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DistGroup::~DistGroup() = default;

int DistGroup::rank() const { return impl_->opts.rank; }
int DistGroup::world() const { return impl_->opts.world; }
const std::string& DistGroup::backend() const { return impl_->opts.backend; }

std::string DistGroup::who() const {
  const auto& o = impl_->opts;
  return "DDP rank " + std::to_string(o.rank) + " of " + std::to_string(o.world) + " (store " +
         o.master_addr + ":" + std::to_string(o.master_port) + ")";
}

void DistGroup::fail(const char* what, const std::exception& e) const {
  auto m = one_line(e);
  if (m.find("Connection closed by peer") != std::string::npos ||
      m.find("Connection reset by peer") != std::string::npos)
    m = "another rank has stopped (" + m + ")";
  else if (m.find("Timed out") != std::string::npos || m.find("timed out") != std::string::npos)
    m = "no answer from the other ranks within " + seconds(impl_->opts.timeout_ms) + " (" + m + ")";
  throw DistError(who() + ": " + what + " failed: " + m);
}

void DistGroup::broadcast(const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  // One flat message per dtype, in the given order (the same on every rank).
  std::vector<c10::ScalarType> dtypes;
  for (const auto& t : tensors)
    if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end())
      dtypes.push_back(t.scalar_type());
  for (auto dtype : dtypes) {
    std::vector<torch::Tensor> part, flat;
    for (const auto& t : tensors)
      if (t.scalar_type() == dtype) part.push_back(t), flat.push_back(t.reshape({-1}));
    std::vector<torch::Tensor> buffer{torch::cat(flat).to(impl_->device).contiguous()};
    guard("broadcasting the model from rank 0",
          [&] { return impl_->pg->broadcast(buffer)->wait(); });
    int64_t offset = 0;
    for (auto& t : part) {
      t.copy_(buffer[0].narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

void DistGroup::all_reduce(torch::Tensor& t, const char* what) {
  // NCCL reduces CUDA tensors only: small host values travel through the group's device.
  const bool moved = t.device() != impl_->device;
  std::vector<torch::Tensor> ts{moved ? t.to(impl_->device) : t};
  guard(what, [&] { return impl_->pg->allreduce(ts)->wait(); });
  if (moved) t.copy_(ts[0]);
}

std::vector<bool> DistGroup::any(const std::vector<bool>& flags, const char* what) {
  auto t = torch::zeros({static_cast<int64_t>(flags.size())}, torch::kInt);
  for (size_t i = 0; i < flags.size(); ++i) t[static_cast<int64_t>(i)] = flags[i] ? 1 : 0;
  std::vector<torch::Tensor> ts{t.to(impl_->device)};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::MAX;
  guard(what, [&] { return impl_->pg->allreduce(ts, opts)->wait(); });
  auto out = ts[0].to(torch::kCPU);
  std::vector<bool> r(flags.size());
  for (size_t i = 0; i < flags.size(); ++i) r[i] = out[static_cast<int64_t>(i)].item<int>() != 0;
  return r;
}

void DistGroup::set(const std::string& key, const std::string& value) {
  guard("sharing a value through the store", [&] {
    impl_->store->set("yolo5/" + key, std::vector<uint8_t>(value.begin(), value.end()));
    return 0;
  });
}

std::string DistGroup::get(const std::string& key) {
  auto bytes = guard("waiting for rank 0 through the store",
                     [&] { return impl_->store->get("yolo5/" + key); });
  return std::string(bytes.begin(), bytes.end());
}

void DistGroup::barrier() {
  guard("waiting for every rank (barrier)", [&] { return impl_->pg->barrier()->wait(); });
}

// --- Gradients ------------------------------------------------------------------------------
//
// c10d's Reducer does this in PyTorch, but its header needs torch/csrc/distributed/autograd/,
// which Debian's libtorch-dev does not ship; the same scheme in a few lines: each trainable
// parameter's gradient hook copies the gradient (÷ world size) into its bucket and hands autograd
// zeros instead; a bucket whose every gradient arrived is all-reduced at once, on Gloo's threads,
// while backward goes on; after backward every bucket is waited for and added into `.grad`.

namespace {

// DDP's bucket sizes: a small first bucket (its all-reduce starts early in backward), then 25 MB.
constexpr int64_t kFirstBucketBytes = 1024 * 1024;
constexpr int64_t kBucketBytes = 25 * 1024 * 1024;

struct Bucket {
  std::vector<size_t> params;  // indices into Impl::params, in the order gradients arrive
  std::vector<int64_t> offsets;
  torch::Tensor buffer;  // flat, the parameters' dtype and device
  size_t pending = 0;    // gradients still to arrive this backward
  c10::intrusive_ptr<c10d::Work> work;
};

}  // namespace

struct GradientSync::Impl {
  std::shared_ptr<DistGroup> group;
  std::vector<torch::Tensor> params;
  std::vector<unsigned> hooks;
  std::vector<std::pair<size_t, int64_t>> slot;  // parameter → (bucket, offset)
  std::vector<Bucket> buckets;
  bool armed = false;  // between before_backward and finish_backward
  std::atomic<int64_t> bytes{0}, launched{0};

  void assign_buckets() {
    // Gradients arrive last layer first: so do the buckets.
    int64_t limit = kFirstBucketBytes, size = 0;
    slot.resize(params.size());
    for (size_t k = params.size(); k-- > 0;) {
      const int64_t n = params[k].numel(), nbytes = n * params[k].element_size();
      if (buckets.empty() || (size > 0 && size + nbytes > limit)) {
        if (!buckets.empty()) limit = kBucketBytes;
        buckets.emplace_back();
        size = 0;
      }
      auto& b = buckets.back();
      slot[k] = {buckets.size() - 1, size / params[k].element_size()};
      b.params.push_back(k);
      b.offsets.push_back(size / params[k].element_size());
      size += nbytes;
    }
    for (auto& b : buckets) {
      int64_t n = 0;
      for (auto k : b.params) n += params[k].numel();
      b.buffer = torch::zeros({n}, params[b.params[0]].options());
    }
  }

  void launch(Bucket& b) {
    b.buffer.div_(group->world());
    std::vector<at::Tensor> ts{b.buffer};
    b.work =
        group->guard("averaging the gradients", [&] { return group->impl().pg->allreduce(ts); });
    bytes += b.buffer.numel() * static_cast<int64_t>(b.buffer.element_size());
    launched += 1;
  }

  torch::Tensor on_gradient(size_t k, const torch::Tensor& g) {
    if (!armed) return g;
    auto [bi, offset] = slot[k];
    auto& b = buckets[bi];
    torch::NoGradGuard no_grad;
    b.buffer.narrow(0, offset, g.numel()).view(g.sizes()).copy_(g);
    if (--b.pending == 0) launch(b);
    return torch::zeros_like(g);  // the average is added once its bucket is back
  }
};

GradientSync::GradientSync(std::shared_ptr<DistGroup> group,
                           std::vector<std::pair<std::string, torch::Tensor>> trainable)
    : impl_(std::make_unique<Impl>()) {
  impl_->group = std::move(group);
  for (auto& [name, p] : trainable) {
    names_.push_back(name);
    impl_->params.push_back(p);
  }
  TORCH_CHECK(!impl_->params.empty(),
              "distributed training needs at least one trainable parameter");
  impl_->assign_buckets();
  auto* im = impl_.get();
  for (size_t k = 0; k < im->params.size(); ++k)
    im->hooks.push_back(im->params[k].register_hook(
        [im, k](const torch::Tensor& g) { return im->on_gradient(k, g); }));
}

GradientSync::~GradientSync() {
  for (size_t k = 0; k < impl_->params.size(); ++k) impl_->params[k].remove_hook(impl_->hooks[k]);
}

void GradientSync::before_backward() {
  impl_->bytes = 0;
  impl_->launched = 0;
  for (auto& b : impl_->buckets) {
    b.pending = b.params.size();
    b.work.reset();
  }
  impl_->armed = true;
}

void GradientSync::finish_backward() {
  auto& im = *impl_;
  im.armed = false;
  // A parameter that got no gradient leaves its bucket pending: sent as it is (zeros there), in
  // bucket order, the same on every rank.
  for (auto& b : im.buckets)
    if (!b.work) im.launch(b);
  torch::NoGradGuard no_grad;
  for (auto& b : im.buckets) {
    im.group->guard("averaging the gradients", [&] { return b.work->wait(); });
    b.work.reset();
    for (size_t j = 0; j < b.params.size(); ++j) {
      auto& p = im.params[b.params[j]];
      auto avg = b.buffer.narrow(0, b.offsets[j], p.numel()).view(p.sizes());
      if (p.mutable_grad().defined())
        p.mutable_grad().add_(avg);
      else
        p.mutable_grad() = avg.clone();
    }
    b.buffer.zero_();
  }
}

int64_t GradientSync::last_bytes() const { return impl_->bytes.load(); }
int64_t GradientSync::buckets() const { return impl_->launched.load(); }

void GroupChannelSums::sum(std::vector<double>& values) {
  auto t = torch::from_blob(values.data(), {static_cast<int64_t>(values.size())}, torch::kDouble)
               .clone();
  group_->all_reduce(t, "--sync-bn: summing BatchNorm statistics");
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + t.numel(), values.begin());
}

#else  // no c10d in this build

struct DistGroup::Impl {
  DistOptions opts;
};
struct GradientSync::Impl {};

bool dist_available() { return false; }
bool nccl_available() { return false; }

std::shared_ptr<DistGroup> DistGroup::join(const DistOptions&) {
  throw DistError(
      "this build has no distributed training: the Gloo headers were not found when it was built "
      "(Debian/Ubuntu: apt-get install libgloo-dev, then npx yolo5 build)");
}
DistGroup::DistGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DistGroup::~DistGroup() = default;
int DistGroup::rank() const { return impl_->opts.rank; }
int DistGroup::world() const { return impl_->opts.world; }
const std::string& DistGroup::backend() const { return impl_->opts.backend; }
std::string DistGroup::who() const { return "DDP rank " + std::to_string(impl_->opts.rank); }
void DistGroup::fail(const char* what, const std::exception& e) const {
  throw DistError(who() + ": " + what + " failed: " + one_line(e));
}
void DistGroup::broadcast(const std::vector<torch::Tensor>&) {}
void DistGroup::all_reduce(torch::Tensor&, const char*) {}
std::vector<bool> DistGroup::any(const std::vector<bool>& flags, const char*) { return flags; }
void DistGroup::set(const std::string&, const std::string&) {}
std::string DistGroup::get(const std::string&) { return ""; }
void DistGroup::barrier() {}
GradientSync::GradientSync(std::shared_ptr<DistGroup>,
                           std::vector<std::pair<std::string, torch::Tensor>>) {}
GradientSync::~GradientSync() = default;
void GradientSync::before_backward() {}
void GradientSync::finish_backward() {}
int64_t GradientSync::last_bytes() const { return 0; }
int64_t GradientSync::buckets() const { return 0; }
void GroupChannelSums::sum(std::vector<double>&) {}

#endif

}  // namespace yolo5
