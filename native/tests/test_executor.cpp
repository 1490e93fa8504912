// The compute executor: FIFO order from several posting threads, its own thread, drain on destruction, tasks that
// throw, and the intra-op setting applied on the compute thread (OpenMP keeps it per thread).
#include "doctest_torch.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "device.h"
#include "executor.h"

TEST_CASE("executor: tasks run on its thread, one at a time, in the order they were posted") {
  std::vector<int> order;
  std::atomic<int> concurrent{0}, max_concurrent{0};
  std::thread::id worker;
  {
    th::Executor ex("th-test");
    CHECK_FALSE(ex.on_this_thread());
    // Three threads post interleaved; each thread's own tasks must keep their order, and no two tasks overlap.
    std::vector<std::thread> posters;
    std::mutex order_mu;
    for (int p = 0; p < 3; ++p) {
      posters.emplace_back([&, p] {
        for (int i = 0; i < 200; ++i) {
          ex.post([&, p, i] {
            const int c = ++concurrent;
            int m = max_concurrent.load();
            while (c > m && !max_concurrent.compare_exchange_weak(m, c)) {}
            worker = std::this_thread::get_id();
            CHECK(ex.on_this_thread());
            {
              std::lock_guard<std::mutex> lock(order_mu);
              order.push_back(p * 1000 + i);
            }
            --concurrent;
          });
        }
      });
    }
    for (auto& t : posters) t.join();
  }  // the destructor runs everything posted, then joins
  REQUIRE(order.size() == 600);
  CHECK(max_concurrent.load() == 1);
  CHECK(worker != std::this_thread::get_id());
  std::vector<int> last = {-1, -1, -1};
  for (int v : order) {
    const int p = v / 1000, i = v % 1000;
    CHECK(i == last[p] + 1);
    last[p] = i;
  }
}

TEST_CASE("executor: a task that throws does not stop the thread, and a task may post another") {
  std::promise<int> done;
  th::Executor ex("th-test");
  ex.post([] { throw std::runtime_error("boom"); });
  ex.post([] { throw 42; });
  ex.post([&] { ex.post([&] { done.set_value(7); }); });
  auto f = done.get_future();
  REQUIRE(f.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  CHECK(f.get() == 7);
}

TEST_CASE("executor: what a task captured is destroyed on the executor's thread") {
  struct Probe {
    std::promise<std::thread::id>* where = nullptr;
    ~Probe() {
      if (where) where->set_value(std::this_thread::get_id());
    }
  };
  std::promise<std::thread::id> where;
  std::promise<std::thread::id> ran_on;
  th::Executor ex("th-test");
  // Held until this thread has dropped its reference, so that the task's copy is the last one whatever the timing.
  std::promise<void> gate;
  ex.post([g = gate.get_future().share()] { g.wait(); });
  {
    auto probe = std::make_shared<Probe>();  // built in place: a temporary's destructor would report the main thread
    probe->where = &where;
    ex.post([probe, &ran_on] { ran_on.set_value(std::this_thread::get_id()); });
  }  // the task holds the last reference now
  gate.set_value();
  auto w = where.get_future();
  REQUIRE(w.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  CHECK(w.get() == ran_on.get_future().get());
}

TEST_CASE("compute executors: one per device, the intra-op count applied on the compute thread") {
  th::Executor& cpu = th::compute_executor(torch::Device(torch::kCPU));
  CHECK(&cpu == &th::compute_executor(std::string("cpu")));
  CHECK(&cpu == &th::compute_executor(std::string("not-a-device")));  // the load there reports the error
  CHECK(&th::compute_executor(std::string("cuda")) == &th::compute_executor(std::string("cuda:0")));
  CHECK(&th::compute_executor(std::string("cuda:1")) != &th::compute_executor(std::string("cuda:0")));
  CHECK(th::compute_threads() >= 3);
  // set_num_threads posted to the compute thread changes what that thread's parallel regions use; the main thread
  // keeps its own count (OpenMP's thread-locals: the reason the setting must run where the work runs).
  const int before_here = at::get_num_threads();
  auto count_there = [&](int n) {
    std::promise<std::pair<int, int>> p;
    cpu.post([&] {
      th::set_num_threads(n);
      // The team a parallel region actually gets, not only the setting.
      std::atomic<int> seen{0};
      std::mutex mu;
      std::vector<std::thread::id> ids;
      at::parallel_for(0, 1 << 16, 1, [&](int64_t, int64_t) {
        std::lock_guard<std::mutex> lock(mu);
        const auto id = std::this_thread::get_id();
        if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
        ++seen;
      });
      p.set_value({at::get_num_threads(), static_cast<int>(ids.size())});
    });
    return p.get_future().get();
  };
  auto [setting1, team1] = count_there(1);
  CHECK(setting1 == 1);
  CHECK(team1 == 1);
  auto [setting2, team2] = count_there(2);
  CHECK(setting2 == 2);
  CHECK(team2 <= 2);
  CHECK(at::get_num_threads() == before_here);
}
