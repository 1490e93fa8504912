// Process groups on c10d (see distributed.h). The c10d API moved between libtorch 1.13 and 2.x: in 2.x the
// backends (ProcessGroupGloo, ProcessGroupNCCL) derive from c10d::Backend, in 1.13 from c10d::ProcessGroup; the
// collectives used here (allreduce, broadcast, barrier, Work::wait) have the same signatures on both bases.
#include "distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>

#if defined(USE_C10D_GLOO) && !defined(TH_NO_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define TH_HAVE_GLOO 1
#endif
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define TH_HAVE_NCCL 1
#endif

#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>

namespace th::dist {
namespace {

#if TORCH_VERSION_MAJOR >= 2
using Base = c10d::Backend;
#else
using Base = c10d::ProcessGroup;
#endif

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// c10::Error's what() carries a C++ backtrace; the first line is the message.
std::string first_line(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return c->msg().substr(0, c->msg().find('\n'));
  std::string s = e.what();
  return s.substr(0, s.find('\n'));
}

bool is_loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

// Tensors grouped into buckets of at most `cap` bytes (a tensor larger than that gets a bucket of its own), one
// dtype and device per bucket, in the given order.
std::vector<std::vector<torch::Tensor>> buckets_of(const std::vector<torch::Tensor>& tensors, int64_t cap) {
  std::vector<std::vector<torch::Tensor>> out;
  std::map<std::pair<int, std::string>, std::pair<size_t, int64_t>> open;  // (dtype, device) -> (bucket, bytes)
  for (const auto& t : tensors) {
    const auto key = std::make_pair(static_cast<int>(t.scalar_type()), t.device().str());
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    auto it = open.find(key);
    if (it == open.end() || it->second.second + bytes > cap) {
      out.emplace_back();
      it = open.insert_or_assign(key, std::make_pair(out.size() - 1, int64_t{0})).first;
    }
    out[it->second.first].push_back(t);
    it->second.second += bytes;
  }
  return out;
}

torch::Tensor flatten(const std::vector<torch::Tensor>& b) {
  if (b.size() == 1 && b[0].is_contiguous()) return b[0].view(-1);
  std::vector<torch::Tensor> flat;
  flat.reserve(b.size());
  for (const auto& t : b) flat.push_back(t.reshape(-1));
  return torch::cat(flat);
}

void unflatten(const torch::Tensor& flat, const std::vector<torch::Tensor>& b) {
  if (b.size() == 1 && b[0].is_contiguous() && flat.data_ptr() == b[0].data_ptr()) return;  // reduced in place
  int64_t off = 0;
  for (const auto& t : b) {
    t.copy_(flat.narrow(0, off, t.numel()).view_as(t));
    off += t.numel();
  }
}

}  // namespace

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Base> pg;
  torch::Device device = torch::kCPU;  // where the group's tensors must be (CUDA for NCCL)

  void wait(std::vector<c10::intrusive_ptr<c10d::Work>>& work, std::chrono::milliseconds timeout) {
    for (auto& w : work) w->wait(timeout);
  }
};

bool backend_available(const std::string& backend) {
#ifdef TH_HAVE_GLOO
  if (backend == "gloo") return true;
#endif
#ifdef TH_HAVE_NCCL
  if (backend == "nccl") return torch::cuda::is_available();
#endif
  return false;
}

std::string digest(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

ProcessGroup::ProcessGroup(Options options) : options_(std::move(options)), impl_(std::make_unique<Impl>()) {}

ProcessGroup::~ProcessGroup() = default;

std::shared_ptr<ProcessGroup> ProcessGroup::create(const Options& o) {
  if (o.world_size < 1) throw ValueError("the world size must be >= 1, got " + std::to_string(o.world_size));
  if (o.rank < 0 || o.rank >= o.world_size) {
    throw ValueError("the rank must be in [0, " + std::to_string(o.world_size) + "), got " + std::to_string(o.rank));
  }
  if (o.master_port < 1 || o.master_port > 65535) throw ValueError("the master port must be in [1, 65535], got " + std::to_string(o.master_port));
  if (o.timeout_ms <= 0) throw ValueError("the timeout must be > 0 ms, got " + std::to_string(o.timeout_ms));
  if (o.backend != "gloo" && o.backend != "nccl") throw ValueError("the backend must be 'gloo' or 'nccl', got '" + o.backend + "'");
  if (!backend_available(o.backend)) {
    if (o.backend == "nccl") {
      throw DeviceError(
          "the 'nccl' backend needs a libtorch built with CUDA and NCCL and a visible CUDA device; this one has " +
          std::string(torch::cuda::is_available() ? "CUDA but no NCCL" : "no CUDA") + ". Use backend 'gloo' (CPU)");
    }
    throw DeviceError("this libtorch has no Gloo process group (built without USE_C10D_GLOO or without the gloo headers)");
  }
  std::shared_ptr<ProcessGroup> g(new ProcessGroup(o));
  const auto timeout = std::chrono::milliseconds(o.timeout_ms);
  const std::string where = o.master_addr + ":" + std::to_string(o.master_port);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(o.master_port);
    so.isServer = o.rank == 0;
    so.numWorkers = static_cast<size_t>(o.world_size);
    // Rank 0 does not wait for the others here: the process group's creation below waits for all of them, with the
    // same timeout, and a store that waited would make a rank 0 started last the only one to see the peers.
    so.waitWorkers = false;
    so.timeout = timeout;
    g->impl_->store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
  } catch (const std::exception& e) {
    g->fail("the rendezvous at " + where + (o.rank == 0 ? " (this rank serves it)" : ""), first_line(e));
  }
  try {
    auto store = c10::make_intrusive<c10d::PrefixStore>("th/pg", g->impl_->store);
    if (o.backend == "gloo") {
#ifdef TH_HAVE_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      // GLOO_SOCKET_IFNAME as torch reads it; on one machine the loopback interface, which always resolves (the
      // default device needs the host name to resolve to an address the other ranks can reach).
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname && *ifname) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(o.master_addr)) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      opts->threads = 2;
      g->impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, o.rank, o.world_size, opts);
#endif
    } else {
#ifdef TH_HAVE_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      g->impl_->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(o.local_rank));
      g->impl_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, o.rank, o.world_size, opts);
#endif
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    g->fail("creating the " + o.backend + " process group (rendezvous at " + where + ")", first_line(e));
  }
  // The first collective connects every pair (NCCL connects lazily): a barrier, so that a peer that never came shows
  // up here, at startup, and not in the first training step.
  g->barrier("the startup barrier");
  return g;
}

void ProcessGroup::fail(const std::string& what, const std::string& cause) const {
  const int r = options_.rank, w = options_.world_size;
  std::string peer;
  if (w == 2) peer = "rank " + std::to_string(1 - r) + " (the other rank)";
  else peer = "one of the other " + std::to_string(w - 1) + " ranks";
  throw DistributedError("rank " + std::to_string(r) + " of " + std::to_string(w) + ": " + what + " failed: " + cause +
                         ". " + peer + " stopped, was killed or cannot be reached within the timeout (" +
                         std::to_string(options_.timeout_ms / 1000) +
                         " s); every rank stops. Look at the first rank that failed in the launcher's output");
}

void ProcessGroup::check_same(const std::vector<std::pair<std::string, std::string>>& fields) {
  const std::string round = "th/check/" + std::to_string(check_round_++) + "/";
  std::string mine;
  for (const auto& [k, v] : fields) mine += k + '\t' + v + '\n';
  auto parse = [](const std::string& s) {
    std::vector<std::pair<std::string, std::string>> out;
    std::istringstream in(s);
    std::string line;
    while (std::getline(in, line)) {
      const auto tab = line.find('\t');
      if (tab != std::string::npos) out.emplace_back(line.substr(0, tab), line.substr(tab + 1));
    }
    return out;
  };
  std::vector<std::pair<int, std::vector<std::pair<std::string, std::string>>>> others;
  try {
    impl_->store->set(round + std::to_string(rank()), std::vector<uint8_t>(mine.begin(), mine.end()));
    for (int r = 0; r < world_size(); ++r) {
      if (r == rank()) continue;
      auto bytes = impl_->store->get(round + std::to_string(r));
      others.emplace_back(r, parse(std::string(bytes.begin(), bytes.end())));
    }
  } catch (const std::exception& e) {
    fail("the configuration check", first_line(e));
  }
  for (const auto& [r, theirs] : others) {
    std::map<std::string, std::string> m(theirs.begin(), theirs.end());
    for (const auto& [k, v] : fields) {
      auto it = m.find(k);
      const std::string other = it == m.end() ? "(missing)" : it->second;
      if (other != v) {
        throw DistributedError("rank " + std::to_string(rank()) + " and rank " + std::to_string(r) + " run different " + k +
                               " (" + v + " here, " + other + " there): every rank must load the same model, heads, " +
                               "LoRA and quantization settings and use the same training arguments");
      }
    }
    if (m.size() != fields.size()) {
      throw DistributedError("rank " + std::to_string(rank()) + " and rank " + std::to_string(r) +
                             " check different sets of settings (" + std::to_string(fields.size()) + " here, " +
                             std::to_string(m.size()) + " there): they run different versions of transformer-heads");
    }
  }
}

void ProcessGroup::bucketed(const std::vector<torch::Tensor>& tensors, Collective op, const std::string& what) {
  torch::NoGradGuard no_grad;
  auto buckets = buckets_of(tensors, options_.bucket_bytes);
  std::vector<torch::Tensor> flats;
  std::vector<c10::intrusive_ptr<c10d::Work>> work;
  const auto timeout = std::chrono::milliseconds(options_.timeout_ms);
  try {
    // Every bucket is posted before any is waited for: Gloo runs them on its worker threads while the next bucket
    // is flattened.
    for (const auto& b : buckets) {
      flats.push_back(flatten(b).to(impl_->device));
      std::vector<torch::Tensor> one{flats.back()};
      if (op == Collective::Broadcast) {
        c10d::BroadcastOptions bo;
        bo.rootRank = 0;
        bo.timeout = timeout;
        work.push_back(impl_->pg->broadcast(one, bo));
      } else {
        c10d::AllreduceOptions ao;
        ao.reduceOp = c10d::ReduceOp::SUM;
        ao.timeout = timeout;
        work.push_back(impl_->pg->allreduce(one, ao));
      }
    }
    impl_->wait(work, timeout);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(what, first_line(e));
  }
  for (size_t i = 0; i < buckets.size(); ++i) unflatten(flats[i].to(buckets[i][0].device()), buckets[i]);
}

void ProcessGroup::broadcast(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  if (world_size() == 1 || tensors.empty()) return;
  bucketed(tensors, Collective::Broadcast, "the broadcast of " + what + " from rank 0");
}

double ProcessGroup::allreduce_sum(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  if (world_size() == 1 || tensors.empty()) return 0;
  const auto t0 = Clock::now();
  bucketed(tensors, Collective::AllReduceSum, "the all-reduce of " + what);
  const double ms = ms_since(t0);
  reduce_ms_ += ms;
  reduce_count_++;
  return ms;
}

std::vector<double> ProcessGroup::allreduce_sum(const std::vector<double>& values, const std::string& what) {
  if (world_size() == 1 || values.empty()) return values;
  torch::Tensor t = torch::tensor(values, torch::kFloat64);
  std::vector<torch::Tensor> one{t};
  const double ms_before = reduce_ms_;
  const int64_t n_before = reduce_count_;
  allreduce_sum(one, what);
  reduce_ms_ = ms_before;  // metric sums are not gradient traffic
  reduce_count_ = n_before;
  auto a = one[0].contiguous();
  return std::vector<double>(a.data_ptr<double>(), a.data_ptr<double>() + a.numel());
}

void ProcessGroup::barrier(const std::string& what) {
  if (world_size() == 1) return;
  try {
    c10d::BarrierOptions bo;
    bo.timeout = std::chrono::milliseconds(options_.timeout_ms);
    if (impl_->device.is_cuda()) bo.device_ids = {static_cast<int64_t>(impl_->device.index())};
    auto w = impl_->pg->barrier(bo);
    w->wait(std::chrono::milliseconds(options_.timeout_ms));
  } catch (const std::exception& e) {
    fail(what, first_line(e));
  }
}

}  // namespace th::dist
