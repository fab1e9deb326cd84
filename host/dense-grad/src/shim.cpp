// An identity whose backward returns the incoming gradient dense in the memory format it
// suggests. A channel slice of a channels-last tensor (what `cat`'s backward hands to each part)
// is neither NCHW- nor channels-last-contiguous, and libtorch's CPU batch-norm backward then
// falls back to a serial element-wise kernel; one copy here lets every consumer take its fast
// path.
//
// No C++ exception may reach Rust: the entry point catches and reports a message.
#include <torch/csrc/autograd/custom_function.h>

#include <cstring>
#include <exception>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

struct DenseGrad : public torch::autograd::Function<DenseGrad> {
  static at::Tensor forward(AutogradContext*, const at::Tensor& x) { return x.view_as(x); }

  static variable_list backward(AutogradContext*, variable_list grads) {
    const at::Tensor& g = grads[0];
    if (!g.defined()) return {g};
    return {g.contiguous(g.suggest_memory_format())};
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
