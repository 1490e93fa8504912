// Device / dtype names as users write them ('cpu', 'cuda', 'cuda:1'; 'float32', 'bfloat16', 'float16').
#pragma once

#include <torch/torch.h>

#include <string>

namespace th {

// Throws DeviceError when the name is unknown or the device is not present in this libtorch build.
torch::Device parse_device(const std::string& name);
torch::ScalarType parse_dtype(const std::string& name);
std::string dtype_name(torch::ScalarType t);
// The message of a c10::Error without the C++ backtrace libtorch appends.
std::string torch_message(const c10::Error& e);

void set_num_threads(int n);
int num_threads();
// Uses every core unless OMP_NUM_THREADS says otherwise; called once by the binding and the test runner.
void init_threads();

}  // namespace th
