{
  # Builds the same two binaries as CMakeLists.txt (cmake-js) with node-gyp: npm's install script (scripts/install.mjs)
  # runs this with the node-gyp that npm bundles when no prebuild fits. libtorch is located by scripts/libtorch.mjs, in
  # the order the runtime uses: TRANSFORMER_HEADS_LIBTORCH / LIBTORCH, Torch_DIR, the PyTorch Python package, the system.
  "targets": [
    {
      # The loader: C and N-API only, no libtorch. It finds and preloads libtorch before the addon is required.
      "target_name": "th_loader",
      "sources": ["native/loader/loader.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-fvisibility=hidden"],
      "libraries": ["-ldl"]
    },
    {
      "target_name": "transformer_heads",
      "sources": [
        "native/addon/addon.cc",
        "native/addon/allocator.cc",
        "native/addon/backbone.cc",
        "native/addon/common.cc",
        "native/addon/convert.cc",
        "native/addon/distributed.cc",
        "native/addon/generator.cc",
        "native/addon/headed.cc",
        "native/addon/torchscript.cc",
        "native/addon/workers.cc",
        "native/core/backbone.cpp",
        "native/core/checkpoint.cpp",
        "native/core/config.cpp",
        "native/core/cpu_allocator.cpp",
        "native/core/data_parallel.cpp",
        "native/core/device.cpp",
        "native/core/distributed.cpp",
        "native/core/executor.cpp",
        "native/core/generate.cpp",
        "native/core/gpt2.cpp",
        "native/core/headed_model.cpp",
        "native/core/heads.cpp",
        "native/core/json_strict.cpp",
        "native/core/lora.cpp",
        "native/core/llama.cpp",
        "native/core/llm_int8.cpp",
        "native/core/losses.cpp",
        "native/core/optimizer.cpp",
        "native/core/quant.cpp",
        "native/core/safetensors.cpp",
        "native/core/small_gemm.cpp",
        "native/core/torchscript_check.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        # native: the binding includes core headers as "core/<name>.h" (native/addon has its own backbone.h).
        "native",
        "native/core",
        "<!@(node scripts/libtorch.mjs include)"
      ],
      "libraries": ["<!@(node scripts/libtorch.mjs libs)"],
      "ldflags": ["<!@(node scripts/libtorch.mjs ldflags)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++1y", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-fvisibility=hidden", "-Wno-deprecated-declarations", "<!@(node scripts/libtorch.mjs cflags)"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "GCC_ENABLE_CPP_RTTI": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_LDFLAGS": ["<!@(node scripts/libtorch.mjs ldflags)"]
      }
    }
  ]
}
