// The part of libtorch's c10d that archai needs: a TCPStore rendezvous, a Gloo process group and
// the collectives the trainer uses, on the `at::Tensor*` behind a tch tensor. No C++ exception
// may reach Rust: every entry point catches, copies c10d's message (without its backtrace) into
// the caller's buffer and returns -1.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
};

void copy_message(char* err, size_t len, const char* msg) {
  if (err == nullptr || len == 0) return;
  std::strncpy(err, msg, len - 1);
  err[len - 1] = '\0';
}

template <typename F>
int guarded(char* err, size_t len, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    copy_message(err, len, e.what_without_backtrace());
  } catch (const std::exception& e) {
    copy_message(err, len, e.what());
  } catch (...) {
    copy_message(err, len, "unknown C++ exception in c10d");
  }
  return -1;
}

// Sums the gradients of a fixed list of parameters over the ranks while the backward pass still
// runs: a post hook on each parameter's gradient accumulator marks it ready, and a bucket (a run
// of parameters in bucket order) whose members are all ready is launched as an asynchronous
// all-reduce on Gloo's own thread. Buckets launch strictly in order, so every rank issues the
// same collectives in the same order whatever order its backward finishes them in; `finish`
// launches what the backward left (parameters it did not reach), waits, and writes the sums back.
//
// Hooks act only while armed (the last backward of a step): earlier backwards of the step (batch
// chunks, architecture steps) accumulate as usual. A parameter accumulated twice while armed
// (its bucket may already be on the wire with half its gradient) is caught, agreed on by all
// ranks through the figures' all-reduce, and every bucket is then reduced again from the
// complete gradients.
struct Reducer;

struct ReadyHook : torch::autograd::FunctionPostHook {
  Reducer* reducer;
  size_t index;
  ReadyHook(Reducer* r, size_t i) : reducer(r), index(i) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& inputs) override;
};

struct Bucket {
  std::vector<size_t> members;
  size_t pending = 0;
  at::Tensor flat;
  c10::intrusive_ptr<c10d::Work> work;
};

struct Reducer {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::vector<at::Tensor> params;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<uintptr_t> hook_keys;
  std::vector<Bucket> buckets;
  std::vector<size_t> bucket_of;
  std::vector<char> ready;
  std::vector<size_t> ready_order;
  std::mutex mu;
  bool armed = false;
  bool twice = false;
  size_t next = 0;
  size_t launched_in_backward = 0;
  std::string error;

  ~Reducer() {
    for (size_t i = 0; i < accumulators.size(); ++i) accumulators[i]->del_post_hook(hook_keys[i]);
  }

  void layout(const std::vector<size_t>& order, int64_t cap_elements) {
    buckets.clear();
    bucket_of.assign(params.size(), 0);
    int64_t filled = 0;
    for (size_t i : order) {
      int64_t n = params[i].numel();
      if (buckets.empty() || (!buckets.back().members.empty() && filled + n > cap_elements)) {
        buckets.emplace_back();
        filled = 0;
      }
      buckets.back().members.push_back(i);
      bucket_of[i] = buckets.size() - 1;
      filled += n;
    }
    reset();
  }

  void reset() {
    for (auto& b : buckets) {
      b.pending = b.members.size();
      b.flat = at::Tensor();
      b.work.reset();
    }
    ready.assign(params.size(), 0);
    ready_order.clear();
    next = 0;
    launched_in_backward = 0;
    twice = false;
    armed = false;
  }

  // The bucket's gradients in one flat fp32 CPU tensor (zeros for a gradient this rank lacks).
  at::Tensor flatten(const Bucket& b) {
    std::vector<at::Tensor> parts;
    parts.reserve(b.members.size());
    for (size_t i : b.members) {
      const at::Tensor& g = params[i].grad();
      parts.push_back(g.defined() ? g.detach().reshape({-1}).to(at::kCPU, at::kFloat)
                                  : at::zeros({params[i].numel()}, at::kFloat));
    }
    return at::cat(parts, 0);
  }

  void launch(Bucket& b) {
    at::NoGradGuard no_grad;
    b.flat = flatten(b);
    std::vector<at::Tensor> ts{b.flat};
    b.work = backend->allreduce(ts);
  }

  // Launches the ready buckets at the head of the order; the caller holds `mu`.
  void launch_ready(bool in_backward) {
    while (next < buckets.size() && buckets[next].pending == 0) {
      launch(buckets[next]);
      if (in_backward) ++launched_in_backward;
      ++next;
    }
  }

  void mark_ready(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || !error.empty()) return;
    if (ready[i]) {
      twice = true;
      return;
    }
    ready[i] = 1;
    ready_order.push_back(i);
    --buckets[bucket_of[i]].pending;
    try {
      launch_ready(true);
    } catch (const c10::Error& e) {
      error = e.what_without_backtrace();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
};

torch::autograd::variable_list ReadyHook::operator()(const torch::autograd::variable_list& outputs,
                                                     const torch::autograd::variable_list&) {
  reducer->mark_ready(index);
  return outputs;
}

}  // namespace

extern "C" {

// Joins the rendezvous at host:port as `rank` of `size` and builds a Gloo group. Rank 0 serves
// the store on `listen_fd` (a socket the caller bound and listens on, so the caller chooses the
// interface; TCPStore itself would bind every interface); other ranks pass -1. `gloo_host` is
// the address this rank's Gloo transport binds to; empty lets Gloo resolve the hostname.
int archai_dist_init(const char* host, int port, int listen_fd, int rank, int size, long long timeout_ms,
                     const char* gloo_host, void** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = rank == 0;
    opts.numWorkers = static_cast<std::size_t>(size);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    if (listen_fd >= 0) opts.masterListenFd = listen_fd;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    std::string gh(gloo_host);
    options->devices.push_back(gh.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                          : c10d::ProcessGroupGloo::createDeviceForHostname(gh));
    // Single-threaded collectives: the ranks already split the cores between them.
    options->threads = 1;
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("gloo", store);
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, options);
    *out = new Group{store, backend};
  });
}

void archai_dist_free(void* group) { delete static_cast<Group*>(group); }

// Sums `tensor` (an at::Tensor*) over the ranks, in place.
int archai_dist_allreduce_sum(void* group, void* tensor, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> ts{*static_cast<at::Tensor*>(tensor)};
    static_cast<Group*>(group)->backend->allreduce(ts)->wait();
  });
}

// Overwrites `tensor` on every rank with root's.
int archai_dist_broadcast(void* group, void* tensor, int root, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> ts{*static_cast<at::Tensor*>(tensor)};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    static_cast<Group*>(group)->backend->broadcast(ts, opts)->wait();
  });
}

int archai_dist_barrier(void* group, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { static_cast<Group*>(group)->backend->barrier()->wait(); });
}

int archai_dist_store_set(void* group, const char* key, const unsigned char* data, size_t len, char* err,
                          size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<uint8_t> value(data, data + len);
    static_cast<Group*>(group)->store->set(std::string("obj/") + key, value);
  });
}

// Waits (up to the store timeout) for `key` and returns its value in a malloc'd buffer the
// caller releases with archai_dist_free_bytes.
int archai_dist_store_get(void* group, const char* key, unsigned char** data, size_t* len, char* err,
                          size_t err_len) {
  return guarded(err, err_len, [&] {
    auto value = static_cast<Group*>(group)->store->get(std::string("obj/") + key);
    *len = value.size();
    *data = static_cast<unsigned char*>(std::malloc(value.size() ? value.size() : 1));
    if (*data == nullptr) throw std::bad_alloc();
    std::memcpy(*data, value.data(), value.size());
  });
}

void archai_dist_free_bytes(unsigned char* data) { std::free(data); }

// A reducer for the `n` parameters `params` (at::Tensor*, each requiring grad), bucketed in the
// given order into buckets of at most `cap_elements` elements (a larger parameter is a bucket
// of its own).
int archai_dist_reducer_new(void* group, void* const* params, size_t n, const size_t* order, long long cap_elements,
                            void** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto r = std::make_unique<Reducer>();
    r->backend = static_cast<Group*>(group)->backend;
    for (size_t i = 0; i < n; ++i) {
      const at::Tensor& p = *static_cast<at::Tensor*>(params[i]);
      TORCH_CHECK(p.requires_grad() && p.is_leaf(), "parameter ", i, " is not a leaf that requires grad");
      r->params.push_back(p);
    }
    // Holding the accumulators keeps them (and so the hooks) for every later graph: a leaf
    // only holds its accumulator weakly.
    for (size_t i = 0; i < n; ++i) {
      auto acc = torch::autograd::impl::grad_accumulator(r->params[i]);
      TORCH_CHECK(acc != nullptr, "parameter ", i, " has no gradient accumulator");
      r->hook_keys.push_back(acc->add_post_hook(std::make_unique<ReadyHook>(r.get(), i)));
      r->accumulators.push_back(std::move(acc));
    }
    r->layout(std::vector<size_t>(order, order + n), cap_elements);
    *out = r.release();
  });
}

void archai_dist_reducer_free(void* reducer) { delete static_cast<Reducer*>(reducer); }

// Re-buckets in `order` (every index once), e.g. the order the gradients became ready in.
int archai_dist_reducer_rebuild(void* reducer, const size_t* order, long long cap_elements, char* err,
                                size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* r = static_cast<Reducer*>(reducer);
    std::lock_guard<std::mutex> lock(r->mu);
    r->layout(std::vector<size_t>(order, order + r->params.size()), cap_elements);
  });
}

// The next backward launches buckets as their gradients complete.
void archai_dist_reducer_arm(void* reducer) {
  auto* r = static_cast<Reducer*>(reducer);
  std::lock_guard<std::mutex> lock(r->mu);
  r->reset();
  r->armed = true;
}

// Completes the step: launches the buckets the backward left, sums `extras` (a contiguous f64
// CPU tensor whose last element is reserved for the reducer's own flag) with them, waits, and
// writes the sums into the gradients this rank holds. `ready_order` receives the order the
// gradients became ready in (n entries; parameters never reached follow in index order) and
// `in_backward` how many of the `buckets` were launched during the backward.
int archai_dist_reducer_finish(void* reducer, void* extras, size_t* ready_order, size_t* in_backward,
                               size_t* buckets, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* r = static_cast<Reducer*>(reducer);
    std::lock_guard<std::mutex> lock(r->mu);
    TORCH_CHECK(r->armed, "the reducer was not armed before the step's last backward");
    r->armed = false;
    TORCH_CHECK(r->error.empty(), "launching a gradient bucket failed: ", r->error);
    for (auto& b : r->buckets) b.pending = 0;
    r->launch_ready(false);
    at::Tensor& figures = *static_cast<at::Tensor*>(extras);
    figures[-1] = r->twice ? 1.0 : 0.0;
    std::vector<at::Tensor> fs{figures};
    auto figures_work = r->backend->allreduce(fs);
    for (auto& b : r->buckets) b.work->wait();
    figures_work->wait();
    if (figures[-1].item<double>() > 0.0) {
      // Some rank accumulated a gradient after its bucket left: reduce everything again from
      // the complete gradients, on every rank alike.
      for (auto& b : r->buckets) r->launch(b);
      for (auto& b : r->buckets) b.work->wait();
    }
    at::NoGradGuard no_grad;
    for (auto& b : r->buckets) {
      int64_t offset = 0;
      for (size_t i : b.members) {
        int64_t len = r->params[i].numel();
        at::Tensor g = r->params[i].grad();
        if (g.defined()) g.copy_(b.flat.narrow(0, offset, len).view(g.sizes()));
        offset += len;
      }
    }
    std::vector<char> seen(r->params.size(), 0);
    size_t k = 0;
    for (size_t i : r->ready_order) {
      seen[i] = 1;
      ready_order[k++] = i;
    }
    for (size_t i = 0; i < r->params.size(); ++i)
      if (!seen[i]) ready_order[k++] = i;
    *in_backward = r->launched_in_backward;
    *buckets = r->buckets.size();
    for (auto& b : r->buckets) {
      b.flat = at::Tensor();
      b.work.reset();
    }
  });
}
}
