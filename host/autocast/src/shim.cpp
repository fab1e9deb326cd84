// The part of ATen's autocast API that tch does not expose (tch::autocast only toggles CUDA).
// Dtypes cross as c10::ScalarType values (what tch's Kind::c_int gives). No C++ exception may
// reach Rust: every entry point catches and reports -1.
#include <ATen/autocast_mode.h>

static at::DeviceType device_of(int device) { return device == 1 ? at::kCUDA : at::kCPU; }

extern "C" {
// Sets autocast on `device` to `enabled` with `dtype`; 0, or -1 if libtorch refused.
int archai_autocast_set(int device, int enabled, int dtype) {
  try {
    at::autocast::set_autocast_dtype(device_of(device), static_cast<at::ScalarType>(dtype));
    at::autocast::set_autocast_enabled(device_of(device), enabled != 0);
    return 0;
  } catch (...) {
    return -1;
  }
}

// 1 or 0, or -1 on error.
int archai_autocast_is_enabled(int device) {
  try {
    return at::autocast::is_autocast_enabled(device_of(device)) ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// The dtype autocast casts to on `device`, or -1 on error.
int archai_autocast_dtype(int device) {
  try {
    return static_cast<int>(at::autocast::get_autocast_dtype(device_of(device)));
  } catch (...) {
    return -1;
  }
}

int archai_autocast_increment_nesting() {
  try {
    return at::autocast::increment_nesting();
  } catch (...) {
    return -1;
  }
}

// Leaving the outermost region drops the cast-weight cache, as torch.autocast's __exit__ does.
int archai_autocast_decrement_nesting() {
  try {
    int depth = at::autocast::decrement_nesting();
    if (depth == 0) at::autocast::clear_cache();
    return depth;
  } catch (...) {
    return -1;
  }
}
}
