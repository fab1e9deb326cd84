// The part of libtorch's c10d that archai needs: a TCPStore rendezvous, a Gloo process group and
// the collectives the trainer uses, on the `at::Tensor*` behind a tch tensor. No C++ exception
// may reach Rust: every entry point catches, copies c10d's message (without its backtrace) into
// the caller's buffer and returns -1.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
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
}
