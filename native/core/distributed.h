// Data-parallel training on PyTorch's own c10d: a TCPStore rendezvous (torchrun's MASTER_ADDR / MASTER_PORT / RANK /
// WORLD_SIZE), a Gloo process group on CPU or an NCCL one on CUDA, and the few collectives the Trainer needs:
// broadcast of the trainable state from rank 0, a bucketed all-reduce of gradients, an all-reduce of metric sums, a
// barrier, and a store-based check that every rank runs the same configuration. Every collective waits at most the
// group's timeout; any failure (a peer that died, a timeout, a closed connection) becomes an Error with code
// ERR_TH_DISTRIBUTED that names this rank and, when it can be known, the peer.
//
// This is the Gloo/NCCL half of torch.nn.parallel.DistributedDataParallel without its autograd hooks: gradients are
// reduced once per optimizer step (after the last micro-batch of a gradient-accumulation window, like DDP's no_sync()
// for the others), in buckets of `bucket_bytes`, all buckets in flight at once and waited for before the update.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "errors.h"

namespace th {

// A collective or the rendezvous failed: a peer died or hung past the timeout, the network failed, or the ranks
// disagree about their configuration.
struct DistributedError : Error {
  explicit DistributedError(const std::string& m) : Error("ERR_TH_DISTRIBUTED", m) {}
};

namespace dist {

struct Options {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string backend = "gloo";  // gloo (CPU tensors) | nccl (CUDA tensors; only in a libtorch built with it)
  // Rendezvous and every collective: how long a rank waits for the others before it gives up (torch's default is
  // 30 minutes; a dead peer is usually noticed at once, since its sockets close).
  int64_t timeout_ms = 300000;
  int64_t bucket_bytes = 25 << 20;  // DDP's default bucket_cap_mb
};

// Whether this libtorch build has the backend's process group ("gloo", "nccl").
bool backend_available(const std::string& backend);

class ProcessGroup {
 public:
  // Rendezvous through a TCPStore at master_addr:master_port (rank 0 serves it) and creates the process group.
  // Throws DistributedError when a peer does not arrive within the timeout, ValueError on bad options, DeviceError
  // for a backend this libtorch lacks.
  static std::shared_ptr<ProcessGroup> create(const Options& options);
  ~ProcessGroup();

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  const Options& options() const { return options_; }

  // Refuses to go on unless every rank passes the same (name, value) pairs: each rank publishes its values in the
  // store and compares them with rank 0's. The error names the first field that differs and both ranks' values.
  void check_same(const std::vector<std::pair<std::string, std::string>>& fields);
  // Overwrites every tensor with rank 0's (in place), bucketed.
  void broadcast(const std::vector<torch::Tensor>& tensors, const std::string& what);
  // Sums every tensor over the ranks, in place, bucketed by dtype and device; all buckets run concurrently and are
  // waited for before returning. Returns the wall time spent, in milliseconds.
  double allreduce_sum(const std::vector<torch::Tensor>& tensors, const std::string& what);
  // Sums plain numbers over the ranks (metric sums and counts), in float64.
  std::vector<double> allreduce_sum(const std::vector<double>& values, const std::string& what);
  void barrier(const std::string& what);

  // Total time spent in gradient all-reduces and how many there were (benchmarks).
  double reduce_ms() const { return reduce_ms_; }
  int64_t reduce_count() const { return reduce_count_; }

 private:
  struct Impl;
  explicit ProcessGroup(Options options);
  [[noreturn]] void fail(const std::string& what, const std::string& cause) const;
  enum class Collective { Broadcast, AllReduceSum };
  // Flattens the tensors into buckets, posts `op` on every bucket before waiting for any, and writes the results back.
  void bucketed(const std::vector<torch::Tensor>& tensors, Collective op, const std::string& what);

  Options options_;
  std::unique_ptr<Impl> impl_;
  double reduce_ms_ = 0;
  int64_t reduce_count_ = 0;
  int64_t check_round_ = 0;
};

// A stable hex digest (FNV-1a 64) of a string: compact values for check_same.
std::string digest(const std::string& s);

}  // namespace dist
}  // namespace th
