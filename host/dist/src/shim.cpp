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
#include <algorithm>
#include <unordered_set>
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
// chunks, architecture steps) accumulate as usual. Arming walks the graph of the loss about to
// be differentiated: parameters it does not reach (an op a sampler left out, a head not used)
// have their final gradients already and are ready at once, so they hold no bucket back. A
// parameter accumulated twice while armed (its bucket may already be on the wire with half its
// gradient) is caught, agreed on by all ranks through the figures' all-reduce, and every bucket
// is then reduced again from the complete gradients.
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
  // The last finished step's complete order (reached parameters first).
  std::vector<size_t> last_order;
  std::mutex mu;
  bool armed = false;
  bool twice = false;
  size_t next = 0;
  // Parameters not yet ready, and the buckets launched while some still were (the ones whose
  // sum overlaps gradient computation).
  size_t waiting = 0;
  size_t overlapped = 0;
  bool reduced_again = false;
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
    waiting = params.size();
    overlapped = 0;
    reduced_again = false;
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
  void launch_ready() {
    while (next < buckets.size() && buckets[next].pending == 0) {
      launch(buckets[next]);
      if (waiting > 0) ++overlapped;
      ++next;
    }
  }

  // The caller holds `mu`; `reached` says whether the backward computes the gradient (it is
  // recorded in the ready order) or had it before (parameters the graph does not reach).
  void set_ready(size_t i, bool reached) {
    ready[i] = 1;
    --waiting;
    if (reached) ready_order.push_back(i);
    --buckets[bucket_of[i]].pending;
  }

  void mark_ready(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || !error.empty()) return;
    if (ready[i]) {
      twice = true;
      return;
    }
    set_ready(i, true);
    try {
      launch_ready();
    } catch (const c10::Error& e) {
      error = e.what_without_backtrace();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }

  // Marks ready the parameters whose accumulators the graph of `loss` does not reach.
  void mark_unreached(const at::Tensor& loss) {
    std::unordered_set<const torch::autograd::Node*> seen;
    std::vector<const torch::autograd::Node*> stack;
    if (const auto& root = loss.grad_fn()) {
      seen.insert(root.get());
      stack.push_back(root.get());
    }
    while (!stack.empty()) {
      const torch::autograd::Node* n = stack.back();
      stack.pop_back();
      for (const auto& edge : n->next_edges()) {
        const auto* f = edge.function.get();
        if (f != nullptr && seen.insert(f).second) stack.push_back(f);
      }
    }
    for (size_t i = 0; i < params.size(); ++i)
      if (seen.count(accumulators[i].get()) == 0) set_ready(i, false);
    launch_ready();
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
  // libtorch 2.11's flight recorder (one per process, on by default) inserts each group into a
  // std::map before taking its lock (FlightRecorderDetail.hpp, recordWithResetEnabled), so two
  // groups of one process that issue collectives at once corrupt the map: the two in-process
  // ranks of the unit tests crashed with SIGSEGV in _Rb_tree_insert_and_rebalance about one run
  // in three. archai never dumps its trace, so it is switched off before the recorder is first
  // built (it reads the variable then); a value the user set is kept.
  static std::once_flag recorder_off;
  std::call_once(recorder_off, [] { setenv("TORCH_FR_BUFFER_SIZE", "0", /*overwrite=*/0); });
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

// Re-buckets every rank in the order rank 0's last finished step completed its gradients in
// (one broadcast), so that buckets fill in the order the backward produces them.
int archai_dist_reducer_rebuild_in_rank0_order(void* reducer, long long cap_elements, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* r = static_cast<Reducer*>(reducer);
    std::lock_guard<std::mutex> lock(r->mu);
    const size_t n = r->params.size();
    TORCH_CHECK(r->last_order.size() == n, "no finished step to take the order from");
    at::Tensor order = at::empty({static_cast<int64_t>(n)}, at::kLong);
    auto* o = order.data_ptr<int64_t>();
    for (size_t i = 0; i < n; ++i) o[i] = static_cast<int64_t>(r->last_order[i]);
    std::vector<at::Tensor> ts{order};
    c10d::BroadcastOptions opts;
    opts.rootRank = 0;
    r->backend->broadcast(ts, opts)->wait();
    std::vector<size_t> chosen(n);
    std::vector<char> seen(n, 0);
    for (size_t i = 0; i < n; ++i) {
      TORCH_CHECK(o[i] >= 0 && static_cast<size_t>(o[i]) < n && !seen[o[i]], "rank 0 sent a broken bucket order");
      seen[o[i]] = 1;
      chosen[i] = static_cast<size_t>(o[i]);
    }
    r->layout(chosen, cap_elements);
  });
}

// The next backward, that of `loss` (an at::Tensor*), launches buckets as their gradients
// complete; buckets of parameters its graph does not reach leave now.
int archai_dist_reducer_arm(void* reducer, void* loss, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* r = static_cast<Reducer*>(reducer);
    std::lock_guard<std::mutex> lock(r->mu);
    // A step that failed after arming left its collectives unfinished; the run stops on that
    // error, so this only keeps the reducer consistent.
    for (auto& b : r->buckets)
      if (b.work) b.work->wait();
    r->reset();
    r->armed = true;
    r->mark_unreached(*static_cast<at::Tensor*>(loss));
  });
}

// Completes the step: launches the buckets the backward left, sums `extras` (a contiguous f64
// CPU tensor whose last element is reserved for the reducer's own flag) with them, waits, and
// writes the sums into the gradients this rank holds. `ready_order` receives the order the
// backward completed gradients in (n entries; the parameters it did not reach placed where it
// would likely have met them),
// `overlapped` how many of the `buckets` were launched while gradients were still being computed,
// `reduced_again` whether the buckets were summed a second time (a gradient accumulated twice).
int archai_dist_reducer_finish(void* reducer, void* extras, size_t* ready_order, size_t* overlapped,
                               size_t* buckets, int* reduced_again, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* r = static_cast<Reducer*>(reducer);
    std::lock_guard<std::mutex> lock(r->mu);
    TORCH_CHECK(r->armed, "the reducer was not armed before the step's last backward");
    r->armed = false;
    TORCH_CHECK(r->error.empty(), "launching a gradient bucket failed: ", r->error);
    for (auto& b : r->buckets) b.pending = 0;
    r->waiting = 0;
    r->launch_ready();
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
      r->reduced_again = true;
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
    // Parameters this backward did not reach (a sampler's other ops) may be reached by the next
    // ones. Parameters are listed about in forward order, so a backward meets them about in
    // reverse index order: each goes just before the first reached parameter of a lower index,
    // next to the ones the backward met at that depth.
    const size_t n = r->params.size();
    std::vector<char> reached(n, 0);
    for (size_t i : r->ready_order) reached[i] = 1;
    r->last_order.clear();
    size_t unplaced = n;  // the unreached parameters with an index >= this are placed
    auto place_down_to = [&](size_t low) {
      while (unplaced > low) {
        --unplaced;
        if (!reached[unplaced]) r->last_order.push_back(unplaced);
      }
    };
    for (size_t i : r->ready_order) {
      if (i + 1 < unplaced) place_down_to(i + 1);
      r->last_order.push_back(i);
    }
    place_down_to(0);
    std::copy(r->last_order.begin(), r->last_order.end(), ready_order);
    *overlapped = r->overlapped;
    *reduced_again = r->reduced_again ? 1 : 0;
    *buckets = r->buckets.size();
    for (auto& b : r->buckets) {
      b.flat = at::Tensor();
      b.work.reset();
    }
  });
}
}
