// The part of ATen's autocast API that tch does not expose (tch::autocast only toggles CUDA).
// Codes instead of ATen enums keep the C interface independent of c10's enum values.
#include <ATen/autocast_mode.h>

static at::DeviceType device_of(int device) { return device == 1 ? at::kCUDA : at::kCPU; }
static at::ScalarType dtype_of(int dtype) { return dtype == 1 ? at::kHalf : at::kBFloat16; }
static int code_of(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return 0;
    case at::kHalf: return 1;
    default: return -1;
  }
}

extern "C" {
// Enables (or disables) autocast on `device` with `dtype`; returns 0, or -1 if libtorch threw.
int archai_autocast_set(int device, bool enabled, int dtype) {
  try {
    at::autocast::set_autocast_dtype(device_of(device), dtype_of(dtype));
    at::autocast::set_autocast_enabled(device_of(device), enabled);
    return 0;
  } catch (...) {
    return -1;
  }
}

bool archai_autocast_is_enabled(int device) { return at::autocast::is_autocast_enabled(device_of(device)); }

int archai_autocast_dtype(int device) { return code_of(at::autocast::get_autocast_dtype(device_of(device))); }

int archai_autocast_increment_nesting() { return at::autocast::increment_nesting(); }

// Leaving the outermost region drops the cast-weight cache, as torch.autocast's __exit__ does.
int archai_autocast_decrement_nesting() {
  int depth = at::autocast::decrement_nesting();
  if (depth == 0) at::autocast::clear_cache();
  return depth;
}
}
