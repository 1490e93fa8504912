#include "executor.h"

#include <ATen/Parallel.h>

#include <map>
#include <utility>

#if defined(__linux__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "device.h"

namespace th {

namespace {

void name_this_thread(const std::string& name) {
  const std::string n = name.substr(0, 15);  // Linux keeps 15 characters and fails on longer names
#if defined(__linux__)
  pthread_setname_np(pthread_self(), n.c_str());
#elif defined(__APPLE__)
  pthread_setname_np(n.c_str());
#else
  (void)n;
#endif
}

}  // namespace

Executor::Executor(std::string name, Task init) : name_(std::move(name)), thread_([this, init = std::move(init)]() mutable { run(std::move(init)); }) {}

Executor::~Executor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Executor::post(Task task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

size_t Executor::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size() + running_;
}

size_t Executor::completed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return completed_;
}

void Executor::run(Task init) {
  name_this_thread(name_);
  if (init) {
    try {
      init();
    } catch (...) {
      // A failed setting leaves libtorch's defaults; the executor must still run the work it is given.
    }
  }
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything posted before has run
      task = std::move(queue_.front());
      queue_.pop_front();
      running_ = 1;
    }
    try {
      task();
    } catch (...) {
      // See post(): tasks capture their own failures; this only keeps the thread alive.
    }
    // Destroy what the task captured here, on this thread (a model's last reference frees its tensors where they
    // were computed), before counting it finished.
    task = nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    running_ = 0;
    ++completed_;
  }
}

namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

// Deliberately leaked (see compute_executor in the header): device key (-1: CPU, else the CUDA index) -> executor.
std::map<int, Executor*>& registry() {
  static auto* r = new std::map<int, Executor*>();
  return *r;
}

Executor& executor_for_key(int key) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto& r = registry();
  auto it = r.find(key);
  if (it != r.end()) return *it->second;
  const std::string name = key < 0 ? "th-compute-cpu" : "th-compute-cu" + std::to_string(key);
  auto* ex = new Executor(name, [] {
    // OpenMP keeps the thread count per thread: apply the process's setting (OMP_NUM_THREADS, setNumThreads, or
    // every core) on the thread that computes. init_threads decides the default; init_num_threads applies the
    // count set so far to this thread's OpenMP and MKL state.
    init_threads();
    at::init_num_threads();
  });
  r.emplace(key, ex);
  return *ex;
}

}  // namespace

Executor& compute_executor(const torch::Device& device) { return executor_for_key(device.is_cuda() ? std::max<int>(0, device.index()) : -1); }

Executor& compute_executor(const std::string& device_name) {
  int key = -1;
  if (device_name == "cuda") {
    key = 0;
  } else if (device_name.rfind("cuda:", 0) == 0 && device_name.size() > 5 && device_name.size() <= 8 &&
             device_name.find_first_not_of("0123456789", 5) == std::string::npos) {
    key = std::stoi(device_name.substr(5));
  }
  return executor_for_key(key);
}

int compute_threads() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  return static_cast<int>(registry().size());
}

void post_to_all_compute(const Executor::Task& task) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  for (auto& [key, ex] : registry()) ex->post(task);
}

}  // namespace th
