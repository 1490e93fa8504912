// Data parallel on c10d with two real processes over 127.0.0.1: this binary spawns itself as rank 1 (the "distributed
// rank 1" test case, which does nothing unless TH_DIST_CHILD is set) and is rank 0 in the parent. Rank 1 checks its
// side with plain exits (code 3 + a message on stderr): a failure there breaks the next collective, which the parent
// sees. The reference for the gradient average is one process training on the union of both ranks' rows.
#include "doctest_torch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "backbone.h"
#include "distributed.h"
#include "errors.h"
#include "headed_model.h"
#include "test_helpers.h"

extern char** environ;

using th_test::fixture;

namespace {

int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  close(s);
  return port;
}

th::HeadConfig head(const std::string& name, int64_t outputs, bool sequence) {
  th::HeadConfig c;
  c.name = name;
  c.target = name;
  c.in_size = 64;
  c.num_outputs = outputs;
  c.loss_fct = th::LossFn::CrossEntropy;
  c.pred_for_sequence = sequence;
  c.ignore_pads = false;
  return c;
}

// Every weight trains (freeze_base false): the backbone's gradients and the heads' go through the all-reduce.
std::shared_ptr<th::HeadedModel> model(uint64_t seed) {
  th::HeadedOptions o;
  o.freeze_base = false;
  o.seed = seed;
  return std::make_shared<th::HeadedModel>(th::load_backbone(fixture("tiny-gpt2.pt"), {}),
                                           std::vector<th::HeadConfig>{head("cls", 3, true), head("tok", 5, false)}, o);
}

const torch::Tensor kIds = torch::tensor({{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 11, 12}, {13, 14, 15, 16}}, torch::kLong);
const torch::Tensor kCls = torch::tensor({0, 2, 1, 2}, torch::kLong);
const torch::Tensor kTok = torch::tensor({{0, 1, 2, 3}, {4, 0, 1, 2}, {3, 4, 0, 1}, {2, 3, 4, 0}}, torch::kLong);

th::Labels rows(int64_t from, int64_t n) { return {{"cls", kCls.narrow(0, from, n)}, {"tok", kTok.narrow(0, from, n)}}; }

// Two optimizer steps, each on rows [from, from + n) of the batch.
std::vector<torch::Tensor> train(th::HeadedModel& m, int64_t from, int64_t n) {
  // AdamW's epsilon above the rounding noise of gradients that are zero in exact arithmetic (GPT-2's key biases:
  // adding a constant to a softmax row changes nothing, so their gradient is a sum of terms that cancel): with 1e-8,
  // AdamW divides that noise by its own magnitude and moves those weights by a full learning rate in a direction
  // that depends on the summation order. 1e-6 is far below every real gradient here.
  th::OptimizerOptions o;
  o.lr = 1e-2;
  o.eps = 1e-6;
  m.configure_optimizer(o);
  for (int step = 0; step < 2; ++step) {
    m.train_step(kIds.narrow(0, from, n), torch::ones({n, 4}, torch::kLong), rows(from, n), 1.0);
    m.optimizer_step(1e-2);
  }
  std::vector<torch::Tensor> out;
  for (auto& [k, t] : m.backbone().named_parameters()) out.push_back(t.detach().clone());
  for (auto& [k, t] : m.head_state("cls")) out.push_back(t.clone());
  return out;
}

// The largest difference relative to the reference's largest magnitude, over all tensors.
double rel_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, (a[i] - b[i]).abs().max().item<double>());
    den = std::max(den, b[i].abs().max().item<double>());
  }
  return num / den;
}

th::dist::Options options(int rank, int port) {
  th::dist::Options o;
  o.rank = rank;
  o.world_size = 2;
  o.master_port = port;
  o.timeout_ms = 20000;
  o.bucket_bytes = 4096;  // many buckets even for the tiny model
  return o;
}

// Both ranks run this; `expect` is CHECK in the parent and exit(3) in the child.
void exchange(int rank, int port, const std::function<void(bool, const std::string&)>& expect) {
  auto g = th::dist::ProcessGroup::create(options(rank, port));
  expect(g->rank() == rank && g->world_size() == 2, "rank and world size");

  g->check_same({{"model", "a"}, {"heads", "b"}});

  // Sums over several buckets, two dtypes, a non-contiguous tensor.
  auto f = torch::full({3, 700}, rank + 1.0, torch::kFloat32);
  auto d = torch::full({5}, 10.0 * (rank + 1), torch::kFloat64);
  auto t = torch::arange(6, torch::kFloat32).view({2, 3}).t().mul(rank + 1);
  g->allreduce_sum({f, d, t}, "test tensors");
  expect(f.eq(3).all().item<bool>(), "float32 sum");
  expect(d.eq(30).all().item<bool>(), "float64 sum");
  expect(t.equal(torch::arange(6, torch::kFloat32).view({2, 3}).t().mul(3)), "strided sum");
  auto v = g->allreduce_sum(std::vector<double>{0.5 + rank, 2.0}, "numbers");
  expect(v.size() == 2 && v[0] == 2.0 && v[1] == 4.0, "number sum");

  auto b = torch::full({4}, static_cast<float>(rank + 7));
  g->broadcast({b}, "test tensor");
  expect(b.eq(7).all().item<bool>(), "broadcast from rank 0");

  // Different seeds per rank: attach_group must make rank 1 start from rank 0's heads.
  auto dp = model(rank == 0 ? 1 : 2);
  dp->attach_group(g);
  auto got = train(*dp, 2 * rank, 2);
  auto ref_model = model(1);
  auto ref = train(*ref_model, 0, 4);
  const double diff = rel_diff(got, ref);
  // float32 gradients summed in another order (two halves, then an all-reduce): a few ulps of the largest weight.
  expect(diff < 1e-5, "2 ranks x 2 rows == 1 process x 4 rows (relative difference " + std::to_string(diff) + ")");

  // A different field is refused on both ranks, naming it.
  std::string msg;
  try {
    g->check_same({{"model", "a"}, {"heads", rank == 0 ? "b" : "c"}});
  } catch (const th::DistributedError& e) {
    msg = e.what();
  }
  expect(msg.find("different heads") != std::string::npos, "mismatch named: '" + msg + "'");
  g->barrier("the end of the checks");
  if (rank == 1) raise(SIGKILL);  // dies as an out-of-memory kill would: no goodbye on any socket

  // The survivor's next collective fails with a coded error naming the dead rank, well within the timeout.
  const auto t0 = std::chrono::steady_clock::now();
  std::string dead;
  try {
    auto x = torch::ones({16});
    g->allreduce_sum({x}, "the gradients");
  } catch (const th::DistributedError& e) {
    dead = e.what();
    CHECK(e.code() == "ERR_TH_DISTRIBUTED");
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(dead);
  CHECK(dead.find("rank 1 (the other rank)") != std::string::npos);
  CHECK(s < 20.5);
}

}  // namespace

TEST_CASE("distributed rank 1") {
  const char* port = std::getenv("TH_DIST_CHILD");
  if (!port) return;
  exchange(1, std::atoi(port), [](bool ok, const std::string& what) {
    if (!ok) {
      std::cerr << "rank 1: " << what << " failed\n";
      std::_Exit(3);
    }
  });
  std::_Exit(0);
}

TEST_CASE("data parallel over two processes: sums, broadcast, 2x2 == 1x4, config mismatch, dead peer") {
  if (std::getenv("TH_DIST_CHILD")) return;
  REQUIRE(th::dist::backend_available("gloo"));
  const int port = free_port();
  const std::string env_port = "TH_DIST_CHILD=" + std::to_string(port);
  std::vector<char*> env;
  for (char** e = environ; *e; ++e) env.push_back(*e);
  env.push_back(const_cast<char*>(env_port.c_str()));
  env.push_back(nullptr);
  std::string self = "/proc/self/exe", tc = "-tc=distributed rank 1";
  char* argv[] = {self.data(), tc.data(), nullptr};
  pid_t child = 0;
  REQUIRE(posix_spawn(&child, "/proc/self/exe", nullptr, nullptr, argv, env.data()) == 0);
  exchange(0, port, [](bool ok, const std::string& what) { CHECK_MESSAGE(ok, what); });
  int status = 0;
  waitpid(child, &status, 0);
  // Killed by its own SIGKILL means rank 1 passed every check before it (a failed one exits with 3).
  CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
}

TEST_CASE("process group options are checked") {
  th::dist::Options o;
  o.world_size = 2;
  o.rank = 2;
  CHECK_THROWS_AS(th::dist::ProcessGroup::create(o), th::ValueError);
  o.rank = 0;
  o.backend = "mpi";
  CHECK_THROWS_AS(th::dist::ProcessGroup::create(o), th::ValueError);
  o.backend = "nccl";
  if (!th::dist::backend_available("nccl")) CHECK_THROWS_AS(th::dist::ProcessGroup::create(o), th::DeviceError);
  // Nobody comes: rank 0 gives up after the timeout with a coded error.
  th::dist::Options lone;
  lone.world_size = 2;
  lone.master_port = free_port();
  lone.timeout_ms = 1500;
  CHECK_THROWS_AS(th::dist::ProcessGroup::create(lone), th::DistributedError);
}
