// Activation recomputation (gradient checkpointing) as a libtorch autograd Function whose body
// is a Rust callback: the forward runs the body without a graph and keeps only its inputs; the
// backward runs the body again with a graph and differentiates it.
//
// Unlike torch.utils.checkpoint's reentrant variant, the parameters the body reads are explicit
// inputs of the Function, so their gradients flow through the outer backward like any other
// input's: `torch::autograd::grad(loss, params)` (what architecture steps use) works, not only
// `loss.backward()`, and the backward only differentiates what the outer call needs
// (`needs_input_grad` reflects the graph task). The body's random draws are replayed (the default
// generators' states are restored for the recomputation) and autocast is re-entered as it was.
//
// No C++ exception may reach Rust: entry points catch and report a message.
#include <ATen/autocast_mode.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/autograd.h>

#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

extern "C" {
typedef void (*archai_push_fn)(void* sink, const at::Tensor* t);
// Runs the body on `inputs`; pushes each output through `push`; 0, or non-zero with a message in
// `err` (at most `errlen` bytes, NUL-terminated).
typedef int (*archai_run_fn)(void* body, const at::Tensor* const* inputs, size_t n, void* sink, archai_push_fn push,
                             char* err, size_t errlen);
typedef void (*archai_drop_fn)(void* body);
}

namespace {

void push_into(void* sink, const at::Tensor* t) { static_cast<std::vector<at::Tensor>*>(sink)->push_back(*t); }

// Owns the Rust body; the autograd node keeps it alive until the graph is freed.
struct Body : torch::CustomClassHolder {
  void* body;
  archai_run_fn run;
  archai_drop_fn drop;
  Body(void* b, archai_run_fn r, archai_drop_fn d) : body(b), run(r), drop(d) {}
  ~Body() override { drop(body); }
  Body(const Body&) = delete;
  Body& operator=(const Body&) = delete;

  std::vector<at::Tensor> call(const std::vector<at::Tensor>& inputs) {
    std::vector<const at::Tensor*> ptrs;
    ptrs.reserve(inputs.size());
    for (const auto& t : inputs) ptrs.push_back(&t);
    std::vector<at::Tensor> out;
    std::vector<char> err(4096, 0);
    if (run(body, ptrs.data(), ptrs.size(), &out, push_into, err.data(), err.size()) != 0) {
      throw std::runtime_error(std::string(err.data()));
    }
    return out;
  }
};

// What must be as it was in the forward pass when the body runs again.
struct Replay {
  at::Tensor cpu_rng;
  at::Tensor device_rng;  // undefined unless the inputs live on an accelerator
  c10::Device device = c10::Device(c10::kCPU);
  bool autocast_cpu = false;
  at::ScalarType autocast_cpu_dtype = at::kBFloat16;
  bool autocast_cuda = false;
  at::ScalarType autocast_cuda_dtype = at::kHalf;

  static at::Tensor rng_state(c10::Device d) {
    auto gen = at::globalContext().defaultGenerator(d);
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get_state();
  }
  static void set_rng_state(c10::Device d, const at::Tensor& state) {
    auto gen = at::globalContext().defaultGenerator(d);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }

  static Replay capture(c10::Device device) {
    Replay r;
    r.device = device;
    r.cpu_rng = rng_state(c10::Device(c10::kCPU));
    if (!device.is_cpu()) r.device_rng = rng_state(device);
    r.autocast_cpu = at::autocast::is_autocast_enabled(at::kCPU);
    r.autocast_cpu_dtype = at::autocast::get_autocast_dtype(at::kCPU);
    if (at::hasCUDA()) {
      r.autocast_cuda = at::autocast::is_autocast_enabled(at::kCUDA);
      r.autocast_cuda_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
    }
    return r;
  }

  void apply() const {
    set_rng_state(c10::Device(c10::kCPU), cpu_rng);
    if (device_rng.defined()) set_rng_state(device, device_rng);
    at::autocast::set_autocast_dtype(at::kCPU, autocast_cpu_dtype);
    at::autocast::set_autocast_enabled(at::kCPU, autocast_cpu);
    if (at::hasCUDA()) {
      at::autocast::set_autocast_dtype(at::kCUDA, autocast_cuda_dtype);
      at::autocast::set_autocast_enabled(at::kCUDA, autocast_cuda);
    }
  }
};

struct ReplayHolder : torch::CustomClassHolder {
  Replay replay;
  explicit ReplayHolder(Replay r) : replay(std::move(r)) {}
};

// Inputs: the activations (first `n_act`), then the parameters the body reads.
struct Recompute : torch::autograd::Function<Recompute> {
  static variable_list forward(AutogradContext* ctx, at::TensorList all, int64_t n_act, c10::intrusive_ptr<Body> body) {
    std::vector<at::Tensor> acts(all.begin(), all.begin() + n_act);
    auto device = acts.empty() ? c10::Device(c10::kCPU) : acts[0].device();
    auto replay = c10::make_intrusive<ReplayHolder>(Replay::capture(device));
    auto outs = body->call(acts);
    ctx->save_for_backward(all.vec());
    ctx->saved_data["n_act"] = n_act;
    ctx->saved_data["body"] = c10::IValue::make_capsule(body);
    ctx->saved_data["replay"] = c10::IValue::make_capsule(replay);
    return outs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "a recomputed cell or op cannot be differentiated twice (backward with create_graph); turn "
                "trainer.recompute_cells and trainer.recompute_ops off for this computation");
    auto saved = ctx->get_saved_variables();
    auto n_act = static_cast<size_t>(ctx->saved_data["n_act"].toInt());
    auto body = c10::static_intrusive_pointer_cast<Body>(ctx->saved_data["body"].toCapsule());
    const auto& replay = c10::static_intrusive_pointer_cast<ReplayHolder>(ctx->saved_data["replay"].toCapsule())->replay;

    std::vector<at::Tensor> acts;
    for (size_t i = 0; i < n_act; ++i) {
      acts.push_back(saved[i].detach().requires_grad_(saved[i].requires_grad()));
    }
    std::vector<at::Tensor> wrt;
    std::vector<size_t> wrt_index;
    for (size_t i = 0; i < saved.size(); ++i) {
      if (ctx->needs_input_grad(i)) {
        wrt.push_back(i < n_act ? acts[i] : saved[i]);
        wrt_index.push_back(i);
      }
    }
    variable_list result(saved.size() + 2);
    if (wrt.empty()) return result;

    // Run the body as in the forward pass, then put back what the caller had.
    auto now = Replay::capture(replay.device);
    std::vector<at::Tensor> outs;
    try {
      replay.apply();
      at::AutoGradMode grad(true);
      outs = body->call(acts);
    } catch (...) {
      now.apply();
      throw;
    }
    now.apply();

    TORCH_CHECK(outs.size() == grad_outputs.size(), "the recomputed body returned ", outs.size(),
                " outputs where the forward pass returned ", grad_outputs.size());
    std::vector<at::Tensor> roots, root_grads;
    for (size_t i = 0; i < outs.size(); ++i) {
      if (grad_outputs[i].defined() && outs[i].requires_grad()) {
        roots.push_back(outs[i]);
        root_grads.push_back(grad_outputs[i]);
      }
    }
    if (roots.empty()) return result;
    auto grads = torch::autograd::grad(roots, wrt, root_grads, /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    for (size_t k = 0; k < wrt_index.size(); ++k) result[wrt_index[k]] = grads[k];
    return result;
  }
};

void report(const char* what, char* err, size_t errlen) {
  if (errlen == 0) return;
  std::strncpy(err, what, errlen - 1);
  err[errlen - 1] = 0;
}

}  // namespace

extern "C" {
// Applies the recomputing Function. Takes ownership of `body` (dropped through `drop` when the
// graph is freed, or before return on failure). Outputs go through `push`. 0, or -1 with a message.
int archai_recompute_apply(void* body, archai_run_fn run, archai_drop_fn drop, const at::Tensor* const* acts,
                           size_t n_act, const at::Tensor* const* params, size_t n_params, void* sink,
                           archai_push_fn push, char* err, size_t errlen) {
  try {
    auto owner = c10::make_intrusive<Body>(body, run, drop);
    std::vector<at::Tensor> all;
    all.reserve(n_act + n_params);
    for (size_t i = 0; i < n_act; ++i) all.push_back(*acts[i]);
    for (size_t i = 0; i < n_params; ++i) all.push_back(*params[i]);
    auto outs = Recompute::apply(at::TensorList(all), static_cast<int64_t>(n_act), owner);
    for (const auto& t : outs) push(sink, &t);
    return 0;
  } catch (const std::exception& e) {
    report(e.what(), err, errlen);
    return -1;
  } catch (...) {
    report("unknown C++ exception", err, errlen);
    return -1;
  }
}

// 1 when autograd records operations on this thread (libtorch's GradMode), 0 otherwise.
int archai_recompute_grad_enabled() { return at::GradMode::is_enabled() ? 1 : 0; }
}
