// An identity whose backward returns the incoming gradient dense in the memory format its input
// had in the forward pass. A channel slice of a channels-last tensor (what `cat`'s backward hands
// to each part) is neither NCHW- nor channels-last-contiguous, and a gradient in another layout
// than the output it belongs to (an NCHW stem output converted to channels-last; a global
// average pool's broadcast gradient, which suggests NCHW) fails the same test: libtorch's CPU
// batch-norm backward then falls back to a serial element-wise kernel. One copy here lets every
// producer take its fast path.
//
// No C++ exception may reach Rust: the entry point catches and reports a message.
#include <torch/csrc/autograd/custom_function.h>

#include <cstring>
#include <exception>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

struct DenseGrad : public torch::autograd::Function<DenseGrad> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    ctx->saved_data["format"] = static_cast<int64_t>(x.suggest_memory_format());
    return x.view_as(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& g = grads[0];
    if (!g.defined()) return {g};
    return {g.contiguous(static_cast<at::MemoryFormat>(ctx->saved_data["format"].toInt()))};
  }
};

void write_error(char* err, size_t errlen, const char* what) {
  if (errlen == 0) return;
  std::strncpy(err, what, errlen - 1);
  err[errlen - 1] = '\0';
}

}  // namespace

extern "C" int archai_dense_grad(const at::Tensor* x, at::Tensor** out, char* err, size_t errlen) {
  try {
    *out = new at::Tensor(DenseGrad::apply(*x));
    return 0;
  } catch (const std::exception& e) {
    write_error(err, errlen, e.what());
  } catch (...) {
    write_error(err, errlen, "unknown C++ exception");
  }
  return 1;
}
