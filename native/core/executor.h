// One compute thread per device. Every libtorch call of the process that touches a tensor runs on the compute thread
// of the device it works on, one task at a time, in the order the tasks were posted (DESIGN.md section 7).
//
// Why one thread and not a pool: each thread that runs ATen kernels gets its own OpenMP team (OpenMP's thread-locals)
// and, under glibc, its own malloc arena; four pool threads running libtorch meant four teams (5-9 busy threads on 2
// cores) and four arenas that each kept their freed activations. One thread per device keeps one intra-op team, one
// arena for tensor memory, and an obvious order: a model's calls run in the order they were made, and a setting
// (the intra-op thread count) applies to everything posted after it.
//
// A distributed rank is one process with the same executors; nothing here knows about Node (the binding hands work
// over with post() and learns of the end from the task itself).
#pragma once

#include <torch/torch.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace th {

class Executor {
 public:
  using Task = std::function<void()>;

  // Starts the thread, named `name` (shown by top -H, gdb, /proc/<pid>/task/*/comm; at most 15 characters are kept).
  // `init` runs first on the new thread (the compute executors set the intra-op thread count there).
  explicit Executor(std::string name, Task init = {});
  // Runs every task already posted, then joins the thread. The compute executors are never destroyed (see
  // compute_executor); tests create and destroy their own.
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task` behind every task posted before (from any thread, including the executor's own). Never waits for
  // running work. A task that throws is dropped with its exception: tasks report their own failures (the binding
  // captures them into the Promise it settles), so the thread never dies.
  void post(Task task);

  bool on_this_thread() const { return std::this_thread::get_id() == thread_.get_id(); }
  const std::string& name() const { return name_; }
  // Tasks posted and not yet finished (the running one included).
  size_t pending() const;
  // Tasks finished since start.
  size_t completed() const;

 private:
  void run(Task init);

  const std::string name_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  size_t running_ = 0, completed_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last: it starts once the members above exist
};

// The compute executor of `device` (CPU: one; each CUDA device: its own), started on first use with the intra-op
// thread count applied (init_threads, then at::init_num_threads for this thread). These executors live until the
// process ends: a model freed at exit may still hold a task on them, and joining a thread from a static destructor
// could wait on libtorch work at a point where libtorch's own statics are gone.
Executor& compute_executor(const torch::Device& device);
// The executor for a device as a user names it ('cpu', 'cuda', 'cuda:1'), before a model exists (loading runs there).
// A name that does not parse routes to the CPU executor, where the load itself reports the error.
Executor& compute_executor(const std::string& device_name);
// How many compute executors have started.
int compute_threads();
// Posts a copy of `task` to every started compute executor (a setting every compute thread must apply, such as the
// intra-op thread count, which OpenMP keeps per thread). Executors started later pick the setting up in their init.
void post_to_all_compute(const Executor::Task& task);

}  // namespace th
