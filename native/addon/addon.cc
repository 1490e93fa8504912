// The Node module: registers the classes and free functions of the binding. The binding is thin: it converts JS
// values to core types on the main thread (convert.h), runs every call that touches a tensor on the compute thread
// of its device (workers.h, core/executor.h) and turns each C++ exception into a JS Error with a `code` (common.h).
// No model logic lives here; one file per class: backbone.cc (NativeBackbone), headed.cc (NativeHeadedModel),
// generator.cc (NativeGenerator), torchscript.cc. allocator.cc configures glibc's allocator when the addon loads.
#include <napi.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include "backbone.h"
#include "common.h"
#include "core/config.h"
#include "core/device.h"
#include "core/executor.h"
#include "generator.h"
#include "headed.h"
#include "allocator.h"
#include "core/cpu_allocator.h"
#include "core/small_gemm.h"
#include "distributed.h"
#include "torchscript.h"
#include "workers.h"

#if defined(__linux__)
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#elif defined(__APPLE__)
#include <stdio.h>  // renamex_np, RENAME_SWAP (macOS 10.12+)
#endif

namespace {

using namespace th::addon;

th::Executor& cpu_executor() { return th::compute_executor(torch::Device(torch::kCPU)); }

// setNumThreads(n) -> Promise<void>. OpenMP keeps the intra-op count per thread, so the setting runs on the compute
// threads, in order with the work posted before it: the CPU thread first (its failure rejects), then every other
// compute thread started so far; threads started later take the count in their init (executor.cpp).
Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw_error(env, "ERR_TH_ARG", "setNumThreads(n): n must be a number");
  const int n = info[0].As<Napi::Number>().Int32Value();
  th::Executor* cpu = &cpu_executor();
  return queue_void(env, *cpu, [n, cpu]() {
    th::set_num_threads(n);
    th::post_to_all_compute([n, cpu]() {
      if (!cpu->on_this_thread()) th::set_num_threads(n);
    });
  });
}

// The process's OS threads (Linux: /proc/self/status "Threads:"); -1 where the system does not say.
int os_threads() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("Threads:", 0) == 0) {
      try {
        return std::stoi(line.substr(8));
      } catch (...) {
        return -1;
      }
    }
  }
  return -1;
}

struct Runtime {
  bool cuda = false;
  int64_t cuda_devices = 0;
  int intra_op = 0;
};

// runtimeInfo() -> Promise<{ torchVersion, cudaAvailable, cudaDeviceCount, numThreads, computeThreads, osThreads,
// malloc }>. On the CPU compute thread: probing CUDA may load the CUDA libraries (seconds), and the intra-op count is
// the compute thread's own (OpenMP's per-thread setting). The OS thread count is read when the Promise settles.
Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return queue_work(
      env, cpu_executor(),
      []() {
        Runtime r;
        r.cuda = torch::cuda::is_available();
        r.cuda_devices = r.cuda ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
        r.intra_op = th::num_threads();
        return r;
      },
      [](Napi::Env env, const Runtime& r) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("torchVersion", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                                  std::to_string(TORCH_VERSION_PATCH));
        o.Set("cudaAvailable", Napi::Boolean::New(env, r.cuda));
        o.Set("cudaDeviceCount", Napi::Number::New(env, static_cast<double>(r.cuda_devices)));
        o.Set("numThreads", Napi::Number::New(env, r.intra_op));
        o.Set("computeThreads", Napi::Number::New(env, th::compute_threads()));
        o.Set("osThreads", Napi::Number::New(env, os_threads()));
        o.Set("malloc", malloc_settings_to_js(env));
        const th::SmallGemmInfo g = th::small_gemm_info();
        Napi::Object sg = Napi::Object::New(env);
        sg.Set("library", g.library.empty() ? env.Null() : Napi::String::New(env, g.library));
        sg.Set("maxRows", Napi::Number::New(env, static_cast<double>(th::kSmallGemmRows)));
        if (!g.reason.empty()) sg.Set("reason", g.reason);
        sg.Set("calls", Napi::Number::New(env, static_cast<double>(g.calls)));
        sg.Set("fused4bit", Napi::Boolean::New(env, g.fused_4bit));
        o.Set("smallGemm", sg);
        return o;
      });
}

// parseModelConfig(text) -> Promise<string>: config.json text checked by the core's parse_config (the loader's own
// validation) and returned as its normalized camelCase fields (config_to_json), or rejected with ERR_TH_CONFIG. On the
// CPU compute thread like every other native call that may take time (a config can be large); no tensor is touched.
Napi::Value ParseModelConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "ERR_TH_ARG", "parseModelConfig(text): text must be a string");
  std::string text = info[0].As<Napi::String>();
  return queue_work(
      env, cpu_executor(), [text = std::move(text)]() { return th::config_to_json(th::parse_config(text)); },
      [](Napi::Env env, const std::string& json) { return Napi::String::New(env, json); });
}

// ------------------------------------------------------------------------------------------- files

// exchangePaths(a, b) -> boolean: swaps two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE, macOS
// renamex_np RENAME_SWAP), which Node's fs cannot do. Folder saves (ts/io/atomic.ts) build the new folder next to
// the old one and swap them, so a reader or a killed process only ever sees one whole version. false: this platform
// or filesystem cannot swap (the caller falls back to two renames). Synchronous: one metadata syscall, no tensors.
Napi::Value ExchangePaths(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) throw_error(env, "ERR_TH_ARG", "exchangePaths(a, b): two paths");
  const std::string a = info[0].As<Napi::String>().Utf8Value();
  const std::string b = info[1].As<Napi::String>().Utf8Value();
  int err = 0;
#if defined(__linux__) && defined(SYS_renameat2)
  if (syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) return Napi::Boolean::New(env, true);
  err = errno;
#elif defined(__APPLE__)
  if (renamex_np(a.c_str(), b.c_str(), RENAME_SWAP) == 0) return Napi::Boolean::New(env, true);
  err = errno;
#else
  return Napi::Boolean::New(env, false);
#endif
  // Not supported by the kernel (ENOSYS) or the filesystem (EINVAL, ENOTSUP: NFS, FAT, old overlayfs).
  if (err == ENOSYS || err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP) return Napi::Boolean::New(env, false);
  throw_error(env, "ERR_TH_FILE", "cannot swap '" + a + "' and '" + b + "': " + std::strerror(err));
}

// releaseCpuCache() -> number: unmaps the freed buffers the caching CPU allocator keeps for reuse and returns their
// bytes (0 when it is off). Synchronous: munmap calls under the allocator's lock, no tensor work; buffers in use are
// untouched, so it is safe while a model computes on the compute thread.
Napi::Value ReleaseCpuCache(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(th::release_cpu_cache()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  configure_malloc();  // once per process, before the first tensor
  auto* data = new AddonData();
  data->backbone_ctor = Napi::Persistent(BackboneWrap::Define(env));
  data->torchscript_ctor = Napi::Persistent(TorchScriptWrap::Define(env));
  data->headed_ctor = Napi::Persistent(HeadedWrap::Define(env));
  data->generator_ctor = Napi::Persistent(GeneratorWrap::Define(env));
  data->bridge = std::make_shared<Bridge>(env);
  env.SetInstanceData<AddonData>(data);
  exports.Set("loadBackbone", Napi::Function::New<LoadBackbone>(env, "loadBackbone"));
  exports.Set("loadHeaded", Napi::Function::New<LoadHeaded>(env, "loadHeaded"));
  exports.Set("loadTorchScript", Napi::Function::New<LoadTorchScript>(env, "loadTorchScript"));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("parseModelConfig", Napi::Function::New<ParseModelConfig>(env, "parseModelConfig"));
  exports.Set("runtimeInfo", Napi::Function::New<RuntimeInfo>(env, "runtimeInfo"));
  exports.Set("exchangePaths", Napi::Function::New<ExchangePaths>(env, "exchangePaths"));
  exports.Set("releaseCpuCache", Napi::Function::New<ReleaseCpuCache>(env, "releaseCpuCache"));
  RegisterDistributed(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(transformer_heads, Init)
