// Training-mode batch norm for channels-last float tensors on the CPU, as a libtorch autograd
// Function. libtorch's channels-last kernels walk the [N*H*W, C] buffer one row of C values at a
// time; with the few channels of DARTS cells (8-64) each row is one or two vectors and the
// per-row overhead dominates (a DARTS-V2 evaluation network spends 29% of its training time in
// batch norm). Here the buffer is read as rows of L = k*C values (L >= 256), so every loop runs
// over long rows, vectorized for the CPU at hand. The passes are libtorch's: the mean, the
// squares around it (a one-pass variance from sums around the first row lost digits that the
// batch norms of a deep network amplify into 2% errors of gradients upstream: tests/model.rs),
// the normalization; the backward's two sums, then the input gradient with x - mean formed first.
//
// A backward pass that itself records a graph (double backward) runs libtorch's differentiable
// batch-norm backward instead. No C++ exception may reach Rust: the entry point catches and
// reports a message.
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <vector>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// The loops over blocks, compiled for AVX-512, AVX2 and the baseline; the loader picks one.
#define ARCHAI_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// s1 += x - pivot, s2 += (x - pivot)^2, lane by lane over `n` blocks of `L` values.
ARCHAI_CLONES void shifted_sums(const float* __restrict__ x, const float* __restrict__ pivot, float* __restrict__ s1,
                                float* __restrict__ s2, int64_t n, int64_t L) {
  for (int64_t b = 0; b < n; ++b, x += L)
    for (int64_t j = 0; j < L; ++j) {
      const float d = x[j] - pivot[j];
      s1[j] += d;
      s2[j] += d * d;
    }
}

// s1 += g, s2 += g * (x - mean).
ARCHAI_CLONES void grad_sums(const float* __restrict__ x, const float* __restrict__ g, const float* __restrict__ mean,
                             float* __restrict__ s1, float* __restrict__ s2, int64_t n, int64_t L) {
  for (int64_t b = 0; b < n; ++b, x += L, g += L)
    for (int64_t j = 0; j < L; ++j) {
      s1[j] += g[j];
      s2[j] += g[j] * (x[j] - mean[j]);
    }
}

// y = x * s + t.
ARCHAI_CLONES void affine(const float* __restrict__ x, const float* __restrict__ s, const float* __restrict__ t,
                          float* __restrict__ y, int64_t n, int64_t L) {
  for (int64_t b = 0; b < n; ++b, x += L, y += L)
    for (int64_t j = 0; j < L; ++j) y[j] = x[j] * s[j] + t[j];
}

// o = (g - mdy - (x - mean) * k) * wi: libtorch's order, so that x - mean is formed before any
// product (expanding it into per-channel constants loses the digits that cancel).
ARCHAI_CLONES void grad_input(const float* __restrict__ x, const float* __restrict__ g, const float* __restrict__ mean,
                              const float* __restrict__ mdy, const float* __restrict__ k, const float* __restrict__ wi,
                              float* __restrict__ o, int64_t n, int64_t L) {
  for (int64_t i = 0; i < n; ++i, x += L, g += L, o += L)
    for (int64_t j = 0; j < L; ++j) o[j] = (g[j] - mdy[j] - (x[j] - mean[j]) * k[j]) * wi[j];
}

// Rows of the [R, C] buffer grouped k at a time: `blocks` blocks of L = k*C values, then `tail`
// rows of C values.
struct Layout {
  int64_t C, L, blocks, tail_rows;
  Layout(int64_t rows, int64_t c) : C(c) {
    int64_t k = std::max<int64_t>(1, (256 + c - 1) / c);
    L = k * c;
    blocks = rows / k;
    tail_rows = rows - blocks * k;
  }
};

// Per-thread partial sums of f(block) over the blocks, folded per channel in double.
// `body(begin, end, acc...)` accumulates blocks [begin, end) into float arrays of length L.
template <int NACC, typename Body>
std::vector<double> reduce_blocks(const Layout& lay, Body body) {
  const int nt = at::get_num_threads();
  std::vector<double> total(NACC * lay.C, 0.0);
  std::vector<std::vector<double>> per_thread(nt, std::vector<double>(NACC * lay.C, 0.0));
  // Chunks of at most 64 blocks are summed in float, then added in double.
  at::parallel_for(0, lay.blocks, 16, [&](int64_t begin, int64_t end) {
    auto& mine = per_thread[at::get_thread_num()];
    std::vector<float> acc(NACC * lay.L);
    for (int64_t b0 = begin; b0 < end; b0 += 64) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      body(b0, std::min(end, b0 + 64), acc.data());
      for (int a = 0; a < NACC; ++a)
        for (int64_t j = 0; j < lay.L; ++j) mine[a * lay.C + j % lay.C] += acc[a * lay.L + j];
    }
  });
  for (const auto& t : per_thread)
    for (size_t i = 0; i < total.size(); ++i) total[i] += t[i];
  return total;
}

std::vector<float> repeat_to(const std::vector<double>& per_channel, int64_t L) {
  std::vector<float> out(L);
  const int64_t C = per_channel.size();
  for (int64_t j = 0; j < L; ++j) out[j] = static_cast<float>(per_channel[j % C]);
  return out;
}

// y = x * scale + shift, per channel.
void affine_rows(const float* x, float* y, const Layout& lay, const std::vector<double>& scale,
                 const std::vector<double>& shift) {
  const auto s = repeat_to(scale, lay.L), t = repeat_to(shift, lay.L);
  const int64_t L = lay.L;
  at::parallel_for(0, lay.blocks, 16, [&](int64_t begin, int64_t end) {
    affine(x + begin * L, s.data(), t.data(), y + begin * L, end - begin, L);
  });
  const int64_t off = lay.blocks * L;
  for (int64_t i = 0; i < lay.tail_rows * lay.C; ++i) y[off + i] = x[off + i] * s[i % lay.C] + t[i % lay.C];
}

bool fits(const at::Tensor& x) {
  return x.defined() && x.layout() == at::kStrided && x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 4 &&
         x.is_contiguous(at::MemoryFormat::ChannelsLast) && x.size(1) > 0 && x.numel() / x.size(1) > 1;
}

std::vector<double> channel_values(const at::Tensor& t, int64_t C, double fill) {
  std::vector<double> v(C, fill);
  if (t.defined()) {
    TORCH_CHECK(t.numel() == C, "batch norm shim: a weight or bias of ", t.numel(), " values for ", C, " channels");
    auto c = t.detach().to(at::kDouble).contiguous();
    std::memcpy(v.data(), c.data_ptr<double>(), C * sizeof(double));
  }
  return v;
}

// The running statistics: buffers, not inputs of the graph (a struct, so that the autograd
// Function does not take them for variables).
struct RunningStats {
  at::Tensor mean, var;
};

struct ChannelsLastBatchNorm : public torch::autograd::Function<ChannelsLastBatchNorm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const std::optional<at::Tensor>& weight_opt,
                            const std::optional<at::Tensor>& bias_opt, const RunningStats& running, double momentum,
                            double eps) {
    const at::Tensor weight = weight_opt.value_or(at::Tensor()), bias = bias_opt.value_or(at::Tensor());
    const at::Tensor& running_mean = running.mean;
    const at::Tensor& running_var = running.var;
    const int64_t C = x.size(1), R = x.numel() / C;
    const Layout lay(R, C);
    const float* xp = x.data_ptr<float>();
    // Sums of x - p and (x - p)^2 per channel for a pivot p.
    auto shifted = [&](const std::vector<double>& p) {
      const auto pv = repeat_to(p, lay.L);
      auto sums = reduce_blocks<2>(lay, [&](int64_t b0, int64_t b1, float* acc) {
        shifted_sums(xp + b0 * lay.L, pv.data(), acc, acc + lay.L, b1 - b0, lay.L);
      });
      const float* tail = xp + lay.blocks * lay.L;
      for (int64_t i = 0; i < lay.tail_rows * C; ++i) {
        const double d = static_cast<double>(tail[i]) - static_cast<float>(p[i % C]);
        sums[i % C] += d;
        sums[C + i % C] += d * d;
      }
      return sums;
    };
    // Two passes, as libtorch: the mean, then the squares around it (a one-pass variance loses
    // digits wherever the mean is far from the pivot, and train-mode batch norms upstream of
    // others amplify such errors in their gradients).
    std::vector<double> mean(C, 0.0), var(C), invstd(C);
    const auto first = shifted(mean);
    for (int64_t c = 0; c < C; ++c) mean[c] = static_cast<float>(first[c] / R);
    const auto second = shifted(mean);
    for (int64_t c = 0; c < C; ++c) {
      const double m = second[c] / R;
      mean[c] += m;
      // Negative from rounding only; NaN stays NaN (std::max would turn it into 0).
      var[c] = second[C + c] / R - m * m;
      if (var[c] < 0.0) var[c] = 0.0;
      invstd[c] = 1.0 / std::sqrt(var[c] + eps);
    }
    TORCH_CHECK(running_mean.defined() == running_var.defined(),
                "batch norm shim: give both running statistics or neither");
    if (running_mean.defined()) {
      at::NoGradGuard no_grad;
      auto opts = at::TensorOptions().dtype(at::kDouble);
      auto m = at::from_blob(mean.data(), {C}, opts).to(running_mean.scalar_type());
      auto v = at::from_blob(var.data(), {C}, opts).mul(static_cast<double>(R) / (R - 1)).to(running_var.scalar_type());
      at::Tensor(running_mean).mul_(1.0 - momentum).add_(m, momentum);
      at::Tensor(running_var).mul_(1.0 - momentum).add_(v, momentum);
    }
    const auto w = channel_values(weight, C, 1.0), b = channel_values(bias, C, 0.0);
    std::vector<double> scale(C), shift(C);
    for (int64_t c = 0; c < C; ++c) {
      scale[c] = invstd[c] * w[c];
      shift[c] = b[c] - mean[c] * scale[c];
    }
    auto y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
    affine_rows(xp, y.data_ptr<float>(), lay, scale, shift);

    auto dopts = at::TensorOptions().dtype(at::kDouble);
    ctx->save_for_backward({x, weight});
    ctx->saved_data["mean"] = at::from_blob(mean.data(), {C}, dopts).clone();
    ctx->saved_data["invstd"] = at::from_blob(invstd.data(), {C}, dopts).clone();
    ctx->saved_data["eps"] = eps;
    // Edges exist for defined inputs only: x is edge 0, then weight and bias if given.
    ctx->saved_data["weight_edge"] = static_cast<int64_t>(weight.defined() ? 1 : -1);
    ctx->saved_data["bias_dtype"] = bias.defined() ? bias.scalar_type() : at::kFloat;
    ctx->saved_data["bias_edge"] = static_cast<int64_t>(bias.defined() ? (weight.defined() ? 2 : 1) : -1);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    at::Tensor dy = grads[0];
    const int64_t w_edge = ctx->saved_data["weight_edge"].toInt(), b_edge = ctx->saved_data["bias_edge"].toInt();
    const bool want_w = w_edge >= 0 && ctx->needs_input_grad(w_edge);
    const bool want_b = b_edge >= 0 && ctx->needs_input_grad(b_edge);
    const bool want_x = ctx->needs_input_grad(0);
    auto mean_t = ctx->saved_data["mean"].toTensor(), invstd_t = ctx->saved_data["invstd"].toTensor();
    if (!dy.defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    if (at::GradMode::is_enabled()) {
      // Double backward: libtorch's differentiable formula.
      auto r = at::native_batch_norm_backward(dy, x, weight, {}, {}, mean_t.to(at::kFloat), invstd_t.to(at::kFloat), true,
                                              ctx->saved_data["eps"].toDouble(), {true, want_w, want_b});
      return {std::get<0>(r), want_w ? std::get<1>(r) : at::Tensor(), want_b ? std::get<2>(r) : at::Tensor(),
              at::Tensor(), at::Tensor(), at::Tensor()};
    }
    dy = dy.contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t C = x.size(1), R = x.numel() / C;
    const Layout lay(R, C);
    std::vector<double> mean(mean_t.data_ptr<double>(), mean_t.data_ptr<double>() + C);
    std::vector<double> invstd(invstd_t.data_ptr<double>(), invstd_t.data_ptr<double>() + C);
    const float* xp = x.data_ptr<float>();
    const float* gp = dy.data_ptr<float>();
    const auto mv = repeat_to(mean, lay.L);
    // sum(dy) and sum(dy * (x - mean)) per channel.
    auto sums = reduce_blocks<2>(lay, [&](int64_t b0, int64_t b1, float* acc) {
      grad_sums(xp + b0 * lay.L, gp + b0 * lay.L, mv.data(), acc, acc + lay.L, b1 - b0, lay.L);
    });
    const int64_t off = lay.blocks * lay.L;
    for (int64_t i = 0; i < lay.tail_rows * C; ++i) {
      sums[i % C] += gp[off + i];
      sums[C + i % C] += static_cast<double>(gp[off + i]) * (xp[off + i] - mean[i % C]);
    }
    const auto w = channel_values(weight, C, 1.0);
    // dx = (dy - mean(dy) - (x - mean) * k) * w * invstd with k = mean(dy * (x - mean)) * invstd^2.
    std::vector<double> mdy(C), k(C), wi(C);
    for (int64_t c = 0; c < C; ++c) {
      mdy[c] = sums[c] / R;
      k[c] = sums[C + c] / R * invstd[c] * invstd[c];
      wi[c] = w[c] * invstd[c];
    }
    at::Tensor dx;
    if (want_x) {
      dx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
      const auto mdyv = repeat_to(mdy, lay.L), kv = repeat_to(k, lay.L), wiv = repeat_to(wi, lay.L);
      float* dp = dx.data_ptr<float>();
      const int64_t L = lay.L;
      at::parallel_for(0, lay.blocks, 16, [&](int64_t begin, int64_t end) {
        grad_input(xp + begin * L, gp + begin * L, mv.data(), mdyv.data(), kv.data(), wiv.data(), dp + begin * L,
                   end - begin, L);
      });
      for (int64_t i = 0; i < lay.tail_rows * C; ++i) {
        const int64_t c = i % C;
        dp[off + i] = static_cast<float>((gp[off + i] - mdy[c] - (xp[off + i] - mean[c]) * k[c]) * wi[c]);
      }
    }
    at::Tensor gw, gb;
    auto dopts = at::TensorOptions().dtype(at::kDouble);
    if (want_w) {
      std::vector<double> v(C);
      for (int64_t c = 0; c < C; ++c) v[c] = sums[C + c] * invstd[c];
      gw = at::from_blob(v.data(), {C}, dopts).to(weight.scalar_type(), false, /*copy=*/true);
    }
    if (want_b) {
      gb = at::from_blob(sums.data(), {C}, dopts).to(ctx->saved_data["bias_dtype"].toScalarType(), false, /*copy=*/true);
    }
    return {dx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void write_error(char* err, size_t errlen, const char* what) {
  if (errlen == 0) return;
  std::strncpy(err, what, errlen - 1);
  err[errlen - 1] = '\0';
}

}  // namespace

// 1: `t` is an output of this batch norm (its autograd node is the Function's).
extern "C" int archai_batch_norm_made(const at::Tensor* t) {
  const auto fn = t->defined() ? t->grad_fn() : nullptr;
  return fn && fn->name().find("ChannelsLastBatchNorm") != std::string::npos ? 1 : 0;
}

// 1: the shim handles `x` (a channels-last float CPU tensor with more than one value per
// channel); 0: the caller should use libtorch's batch norm.
extern "C" int archai_batch_norm_fits(const at::Tensor* x) {
  try {
    return fits(*x) ? 1 : 0;
  } catch (...) {
    return 0;  // a layout whose contiguity libtorch cannot tell (sparse, mkldnn): not ours
  }
}

// Training-mode batch norm of `x` (which must fit) with optional `weight`, `bias` (may be
// undefined) and running statistics updated in place when both are defined.
extern "C" int archai_batch_norm_train(const at::Tensor* x, const at::Tensor* weight, const at::Tensor* bias,
                                       const at::Tensor* running_mean, const at::Tensor* running_var, double momentum,
                                       double eps, at::Tensor** out, char* err, size_t errlen) {
  try {
    if (!fits(*x)) throw std::invalid_argument("batch norm shim: input is not a channels-last float CPU tensor");
    auto opt = [](const at::Tensor* t) { return t->defined() ? std::optional<at::Tensor>(*t) : std::nullopt; };
    RunningStats running{*running_mean, *running_var};
    *out = new at::Tensor(ChannelsLastBatchNorm::apply(*x, opt(weight), opt(bias), running, momentum, eps));
    return 0;
  } catch (const std::exception& e) {
    write_error(err, errlen, e.what());
  } catch (...) {
    write_error(err, errlen, "unknown C++ exception");
  }
  return 1;
}
