#include "device.h"

#include "errors.h"

#include <cstdlib>
#include <mutex>
#include <thread>

#if defined(__linux__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

namespace th {

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (name.size() > 5) {
      const std::string digits = name.substr(5);
      if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 3) {
        throw DeviceError("device '" + name + "' is not valid: use 'cpu', 'cuda' or 'cuda:N'");
      }
      index = std::stoi(digits);
    }
    if (!torch::cuda::is_available()) {
      throw DeviceError("device '" + name +
                        "' was requested but this libtorch has no CUDA support or sees no GPU; build against a CUDA "
                        "libtorch (set LIBTORCH or install PyTorch with CUDA) or use device 'cpu'");
    }
    const int count = static_cast<int>(torch::cuda::device_count());
    if (index >= count) {
      throw DeviceError("device '" + name + "' does not exist: " + std::to_string(count) + " CUDA device(s) visible");
    }
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw DeviceError("unknown device '" + name + "': use 'cpu', 'cuda' or 'cuda:N'");
}

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "fp16") return torch::kFloat16;
  throw DeviceError("unknown dtype '" + name + "': use 'float32', 'bfloat16' or 'float16'");
}

std::string dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    default: return c10::toString(t);
  }
}

std::string torch_message(const c10::Error& e) {
  std::string m = e.what_without_backtrace();
  // Some torch versions still append "Exception raised from ..." lines; keep the first paragraph only.
  auto cut = m.find("\nException raised from");
  if (cut != std::string::npos) m.resize(cut);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

void set_num_threads(int n) {
  if (n < 1 || n > 1024) throw ValueError("thread count must be between 1 and 1024, got " + std::to_string(n));
  at::set_num_threads(n);
#if defined(__linux__) || defined(__APPLE__)
  // A pthreads OpenBLAS (Debian's libopenblas0-pthread) runs matrix products on its own pool, which OpenMP's count
  // does not reach: without this, setNumThreads(1) still multiplied on every core. Looked up at run time because
  // the BLAS is whatever libtorch was linked with (MKL, Accelerate, OpenBLAS, or none).
  using SetBlasThreads = void (*)(int);
  static const auto set_blas = reinterpret_cast<SetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_blas != nullptr) set_blas(n);
#endif
}

int num_threads() { return at::get_num_threads(); }

void init_threads() {
  // libtorch's OpenMP default can be 1 in containers (it counts physical cores through the affinity mask it sees at
  // start-up); use every core unless the user chose with OMP_NUM_THREADS. Once per process: at::set_num_threads
  // records the count for the threads that start later (at::init_num_threads applies it there), and a second call
  // from a new thread would otherwise replace a count set since with set_num_threads.
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("OMP_NUM_THREADS") == nullptr) {
      const unsigned n = std::thread::hardware_concurrency();
      if (n > 0 && static_cast<int>(n) > at::get_num_threads()) at::set_num_threads(static_cast<int>(n));
    }
  });
}

}  // namespace th
