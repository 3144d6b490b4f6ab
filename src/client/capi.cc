// The C API: argument checks, then the C++ implementation; a Status becomes
// a gismo_status_t here and nowhere else. No exception crosses this file.
#include <gismo/gismo.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "client/client.h"
#include "common/last_error.h"

// The handle users hold. It outlives gismo_disconnect (a few bytes are kept)
// so that a call on a closed client is reported instead of crashing.
struct gismo_client {
  static constexpr uint64_t kOpen = 0x6f70656e2d67736dull;
  static constexpr uint64_t kClosed = 0x636c6f7365642d67ull;
  uint64_t magic = kOpen;
  std::unique_ptr<gismo::client::ClientImpl> impl;
  uint64_t fork_generation = 0;  // g_fork_generation when it connected
  pid_t pid = 0;                 // the process that connected, for messages
};

namespace {

// Forks. A child of fork() shares its parent's connection, slot and undo log
// but runs none of its threads: a call there would act in the parent's
// session as a second, unsynchronized writer (a lock taken twice, a held
// count off by one, records leaked). So every call checks that it runs in
// the process that connected: the handle keeps the fork generation it was
// made in, and a pthread_atfork handler raises the generation in every
// child. No system call per call. Relaxed: the handler runs in the child's
// only thread before any of its code.
std::atomic<uint64_t> g_fork_generation{0};

void CountForksOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork(nullptr, nullptr,
                   [] { g_fork_generation.fetch_add(1, std::memory_order_relaxed); });
  });
}

// Closed handles stay allocated in a bounded quarantine: a call on one of
// the most recent kQuarantine closed handles is reported, not undefined.
// They are freed when the process exits.
constexpr size_t kQuarantine = 4096;
struct ClosedHandles {
  std::mutex mu;
  std::deque<gismo_client*> handles;
  ~ClosedHandles() {
    for (gismo_client* c : handles) delete c;
  }
};
ClosedHandles g_closed;

void Quarantine(gismo_client* c) {
  std::lock_guard<std::mutex> lk(g_closed.mu);
  g_closed.handles.push_back(c);
  if (g_closed.handles.size() > kQuarantine) {
    delete g_closed.handles.front();
    g_closed.handles.pop_front();
  }
}

using gismo::Status;

gismo_status_t Fail(const Status& s) {
  gismo::SetLastError(s.message());
  return s.code();
}

gismo_status_t Fail(gismo_status_t code, const char* message) {
  gismo::SetLastError(message);
  return code;
}

gismo_status_t Done(const Status& s) {
  if (s.ok()) return GISMO_OK;
  return Fail(s);
}

// Runs `fn` with exceptions turned into statuses.
template <typename Fn>
gismo_status_t Guard(Fn&& fn) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return Fail(GISMO_ERR_INTERNAL, "out of process memory");
  } catch (const std::exception& e) {
    return Fail(GISMO_ERR_INTERNAL, e.what());
  } catch (...) {
    return Fail(GISMO_ERR_INTERNAL, "unknown exception");
  }
}

gismo_status_t CheckClient(const gismo_client_t* c) {
  if (c == nullptr) return Fail(GISMO_ERR_INVALID_ARGUMENT, "client is NULL");
  if (c->magic == gismo_client::kClosed) {
    return Fail(GISMO_ERR_INVALID_ARGUMENT, "client is disconnected");
  }
  if (c->magic != gismo_client::kOpen || !c->impl) {
    return Fail(GISMO_ERR_INVALID_ARGUMENT, "not a gismo client handle");
  }
  if (c->fork_generation != g_fork_generation.load(std::memory_order_relaxed)) {
    // Formatted without allocating: this runs outside Guard.
    char message[192];
    std::snprintf(message, sizeof message,
                  "this client was connected by process %lld, of which this process is a "
                  "forked child; connect again here (the parent's session is left alone)",
                  static_cast<long long>(c->pid));
    return Fail(GISMO_ERR_INVALID_ARGUMENT, message);
  }
  return GISMO_OK;
}

#define GISMO_CHECK_CLIENT(c)                                   \
  do {                                                          \
    if (gismo_status_t rc_ = CheckClient(c); rc_ != GISMO_OK) { \
      return rc_;                                               \
    }                                                           \
  } while (0)

#define GISMO_CHECK_ARG(cond, message)                               \
  do {                                                               \
    if (!(cond)) return Fail(GISMO_ERR_INVALID_ARGUMENT, (message)); \
  } while (0)

void FillNameInfo(const gismo::store::NameBinding& b, gismo_name_info_t* out) {
  std::memset(out->name, 0, sizeof out->name);
  const size_t n = std::min<size_t>(b.name.size(), GISMO_NAME_MAX);
  std::memcpy(out->name, b.name.data(), n);
  out->name_size = n;
  out->id = b.id;
  out->version = b.version;
  out->bind_time_ns = b.bind_time_ns;
}

}  // namespace

extern "C" {

const char* gismo_default_address(void) {
  thread_local std::string address;
  auto a = gismo::client::ManagerAddress("");
  if (!a.ok()) {
    (void)Fail(a.status());
    address.clear();
  } else {
    address = std::move(*a);
  }
  return address.c_str();
}

gismo_status_t gismo_connect(const char* address, gismo_client_t** client) {
  gismo_connect_options_t options{};
  options.address = address;
  return gismo_connect_with_options(&options, client);
}

gismo_status_t gismo_connect_with_options(const gismo_connect_options_t* options,
                                          gismo_client_t** client) {
  GISMO_CHECK_ARG(client != nullptr, "client out-pointer is NULL");
  *client = nullptr;
  GISMO_CHECK_ARG(options != nullptr, "options is NULL");
  CountForksOnce();
  return Guard([&] {
    gismo::client::ConnectOptions o;
    if (options->address) o.address = options->address;
    if (options->key_file) o.key_file = options->key_file;
    if (options->region_path) o.region_path = options->region_path;
    auto impl = gismo::client::ClientImpl::Connect(o);
    if (!impl.ok()) return Fail(impl.status());
    auto* c = new gismo_client();
    c->impl = std::move(*impl);
    c->fork_generation = g_fork_generation.load(std::memory_order_relaxed);
    c->pid = getpid();
    *client = c;
    return GISMO_OK;
  });
}

gismo_status_t gismo_disconnect(gismo_client_t* client) {
  GISMO_CHECK_CLIENT(client);
  return Guard([&] {
    Status s = client->impl->Disconnect();
    client->impl.reset();
    client->magic = gismo_client::kClosed;
    Quarantine(client);
    return Done(s);
  });
}

gismo_status_t gismo_create(gismo_client_t* client, const gismo_id_t* id, size_t data_size,
                            const void* metadata, size_t metadata_size, void** data) {
  return gismo_create_with_flags(client, id, data_size, metadata, metadata_size, 0, data);
}

gismo_status_t gismo_create_with_flags(gismo_client_t* client, const gismo_id_t* id,
                                       size_t data_size, const void* metadata, size_t metadata_size,
                                       uint32_t flags, void** data) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(id != nullptr, "id is NULL");
  GISMO_CHECK_ARG(data != nullptr, "data out-pointer is NULL");
  GISMO_CHECK_ARG(metadata != nullptr || metadata_size == 0,
                  "metadata is NULL but metadata_size is not 0");
  *data = nullptr;
  return Guard([&] {
    return Done(client->impl->Create(*id, data_size, metadata, metadata_size, flags, data));
  });
}

gismo_status_t gismo_seal(gismo_client_t* client, const gismo_id_t* id) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(id != nullptr, "id is NULL");
  return Guard([&] { return Done(client->impl->Seal(*id)); });
}

gismo_status_t gismo_put(gismo_client_t* client, const gismo_id_t* id, const void* data,
                         size_t data_size, const void* metadata, size_t metadata_size) {
  return gismo_put_with_flags(client, id, data, data_size, metadata, metadata_size, 0);
}

gismo_status_t gismo_put_with_flags(gismo_client_t* client, const gismo_id_t* id, const void* data,
                                    size_t data_size, const void* metadata, size_t metadata_size,
                                    uint32_t flags) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(id != nullptr, "id is NULL");
  GISMO_CHECK_ARG(data != nullptr || data_size == 0, "data is NULL but data_size is not 0");
  GISMO_CHECK_ARG(metadata != nullptr || metadata_size == 0,
                  "metadata is NULL but metadata_size is not 0");
  return Guard([&] {
    void* dst = nullptr;
    Status s = client->impl->Create(*id, data_size, metadata, metadata_size, flags, &dst);
    if (!s.ok()) return Fail(s);
    if (data_size > 0) std::memcpy(dst, data, data_size);
    s = client->impl->Seal(*id);
    if (!s.ok()) {
      // Undone, so that the put can be tried again; or sealed after all (a
      // non-coherent seal whose answer came too late): the put is done.
      Status aborted = client->impl->Abort(*id);
      if (aborted.code() == GISMO_ERR_OBJECT_ALREADY_SEALED)
        return Done(client->impl->Release(*id));
      if (!aborted.ok()) {
        return Fail(Status(s.code(), s.message() + "; and its abort failed too (" +
                                         aborted.message() +
                                         "): the unsealed object stays this client's until "
                                         "gismo_abort succeeds, and a put of its id finds it"));
      }
      return Fail(s);
    }
    return Done(client->impl->Release(*id));
  });
}

gismo_status_t gismo_abort(gismo_client_t* client, const gismo_id_t* id) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(id != nullptr, "id is NULL");
  return Guard([&] { return Done(client->impl->Abort(*id)); });
}

gismo_status_t gismo_get(gismo_client_t* client, const gismo_id_t* ids, size_t count,
                         int64_t timeout_ms, gismo_buffer_t* buffers) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(count == 0 || ids != nullptr, "ids is NULL");
  GISMO_CHECK_ARG(count == 0 || buffers != nullptr, "buffers is NULL");
  GISMO_CHECK_ARG(timeout_ms >= -1, "timeout_ms must be -1 (forever), 0 or positive");
  GISMO_CHECK_ARG(count <= (1u << 20), "too many ids in one get (at most 1048576)");
  return Guard([&] { return Done(client->impl->Get(ids, count, timeout_ms, buffers)); });
}

gismo_status_t gismo_release(gismo_client_t* client, const gismo_id_t* id) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(id != nullptr, "id is NULL");
  return Guard([&] { return Done(client->impl->Release(*id)); });
}

gismo_status_t gismo_delete(gismo_client_t* client, const gismo_id_t* id) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(id != nullptr, "id is NULL");
  return Guard([&] { return Done(client->impl->Delete(*id)); });
}

gismo_status_t gismo_get_or_create(gismo_client_t* client, const gismo_id_t* id, size_t data_size,
                                   const void* metadata, size_t metadata_size, uint32_t flags,
                                   int64_t timeout_ms, gismo_buffer_t* buffer, void** data) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(id != nullptr, "id is NULL");
  GISMO_CHECK_ARG(buffer != nullptr, "buffer out-pointer is NULL");
  GISMO_CHECK_ARG(data != nullptr, "data out-pointer is NULL");
  GISMO_CHECK_ARG(metadata != nullptr || metadata_size == 0,
                  "metadata is NULL but metadata_size is not 0");
  *buffer = gismo_buffer_t{};
  *data = nullptr;
  GISMO_CHECK_ARG(timeout_ms >= -1, "timeout_ms must be -1 (forever), 0 or positive");
  return Guard([&] {
    return Done(client->impl->GetOrCreate(*id, data_size, metadata, metadata_size, flags,
                                          timeout_ms, buffer, data));
  });
}

gismo_status_t gismo_evict(gismo_client_t* client, uint64_t bytes, uint64_t* evicted) {
  GISMO_CHECK_CLIENT(client);
  uint64_t ignored = 0;
  if (evicted == nullptr) evicted = &ignored;
  *evicted = 0;
  return Guard([&] { return Done(client->impl->Evict(bytes, evicted)); });
}

gismo_status_t gismo_touch(gismo_client_t* client, const gismo_id_t* id) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(id != nullptr, "id is NULL");
  return Guard([&] { return Done(client->impl->Touch(*id)); });
}

gismo_status_t gismo_contains(gismo_client_t* client, const gismo_id_t* id, bool* contains) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(id != nullptr, "id is NULL");
  GISMO_CHECK_ARG(contains != nullptr, "contains out-pointer is NULL");
  *contains = false;
  return Guard([&] { return Done(client->impl->Contains(*id, contains)); });
}

gismo_status_t gismo_stat(gismo_client_t* client, const gismo_id_t* id, gismo_object_info_t* info) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(id != nullptr, "id is NULL");
  GISMO_CHECK_ARG(info != nullptr, "info out-pointer is NULL");
  return Guard([&] { return Done(client->impl->Stat(*id, info)); });
}

gismo_status_t gismo_bind_name(gismo_client_t* client, const char* name, const gismo_id_t* id) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(name != nullptr, "name is NULL");
  GISMO_CHECK_ARG(id != nullptr, "id is NULL");
  return Guard([&] {
    return Done(client->impl->BindName(name, *id, gismo::store::BindMode::kAlways, nullptr));
  });
}

gismo_status_t gismo_swap_name(gismo_client_t* client, const char* name, const gismo_id_t* expected,
                               const gismo_id_t* desired) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(name != nullptr, "name is NULL");
  GISMO_CHECK_ARG(desired != nullptr, "desired id is NULL");
  return Guard([&] {
    return Done(client->impl->BindName(name, *desired,
                                       expected != nullptr ? gismo::store::BindMode::kIfBoundTo
                                                           : gismo::store::BindMode::kIfUnbound,
                                       expected));
  });
}

gismo_status_t gismo_unbind_name(gismo_client_t* client, const char* name,
                                 const gismo_id_t* expected) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(name != nullptr, "name is NULL");
  return Guard([&] { return Done(client->impl->UnbindName(name, expected)); });
}

gismo_status_t gismo_lookup_name(gismo_client_t* client, const char* name,
                                 gismo_name_info_t* info) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(name != nullptr, "name is NULL");
  GISMO_CHECK_ARG(info != nullptr, "info out-pointer is NULL");
  return Guard([&] {
    gismo::store::NameBinding b;
    if (Status s = client->impl->LookupName(name, &b); !s.ok()) return Fail(s);
    FillNameInfo(b, info);
    return GISMO_OK;
  });
}

gismo_status_t gismo_wait_name(gismo_client_t* client, const char* name, const gismo_id_t* known,
                               int64_t timeout_ms, gismo_name_info_t* info) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(name != nullptr, "name is NULL");
  GISMO_CHECK_ARG(info != nullptr, "info out-pointer is NULL");
  GISMO_CHECK_ARG(timeout_ms >= -1, "timeout_ms must be -1 (forever), 0 or positive");
  return Guard([&] {
    gismo::store::NameBinding b;
    if (Status s = client->impl->WaitName(name, known, timeout_ms, &b); !s.ok()) return Fail(s);
    FillNameInfo(b, info);
    return GISMO_OK;
  });
}

gismo_status_t gismo_list_names(gismo_client_t* client, const char* prefix,
                                gismo_name_info_t* infos, size_t capacity, size_t* count) {
  GISMO_CHECK_ARG(count != nullptr, "count out-pointer is NULL");
  *count = 0;  // what every failure leaves (the listing sets it on success only)
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(capacity == 0 || infos != nullptr, "infos is NULL but capacity is not 0");
  return Guard([&] {
    std::vector<gismo::store::NameBinding> all;
    if (Status s = client->impl->ListNames(prefix != nullptr ? prefix : "", &all); !s.ok()) {
      return Fail(s);
    }
    for (size_t i = 0; i < all.size() && i < capacity; ++i) FillNameInfo(all[i], &infos[i]);
    *count = all.size();
    return GISMO_OK;
  });
}

gismo_status_t gismo_list(gismo_client_t* client, gismo_object_info_t* infos, size_t capacity,
                          size_t* count) {
  GISMO_CHECK_ARG(count != nullptr, "count out-pointer is NULL");
  *count = 0;  // what every failure leaves (the listing sets it on success only)
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(capacity == 0 || infos != nullptr, "infos is NULL but capacity is not 0");
  return Guard([&] { return Done(client->impl->List(infos, capacity, count)); });
}

gismo_status_t gismo_usage(gismo_client_t* client, gismo_usage_t* usage) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(usage != nullptr, "usage out-pointer is NULL");
  return Guard([&] { return Done(client->impl->Usage(usage)); });
}

gismo_status_t gismo_list_clients(gismo_client_t* client, gismo_client_info_t* infos,
                                  size_t capacity, size_t* count) {
  GISMO_CHECK_ARG(count != nullptr, "count out-pointer is NULL");
  *count = 0;  // what every failure leaves (the listing sets it on success only)
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(capacity == 0 || infos != nullptr, "infos is NULL but capacity is not 0");
  return Guard([&] { return Done(client->impl->ListClients(infos, capacity, count)); });
}

gismo_status_t gismo_fence(gismo_client_t* client, gismo_fence_target_t target, uint64_t value,
                           char* report, size_t report_size) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(target >= GISMO_FENCE_CLIENT && target <= GISMO_FENCE_NODE,
                  "fence target must be GISMO_FENCE_CLIENT, _SLOT or _NODE");
  GISMO_CHECK_ARG(report_size == 0 || report != nullptr, "report is NULL but report_size is not 0");
  return Guard([&] {
    gismo::protocol::FenceOrder order;
    order.target = static_cast<gismo::protocol::FenceOrder::Target>(target);
    order.value = value;
    std::string what;
    gismo::Status s = client->impl->Fence(order, &what);
    if (s.ok() && report_size > 0) {
      const size_t n = std::min(what.size(), report_size - 1);
      std::memcpy(report, what.data(), n);
      report[n] = '\0';
    }
    return Done(s);
  });
}

gismo_status_t gismo_subscribe(gismo_client_t* client, int* fd) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(fd != nullptr, "fd out-pointer is NULL");
  return Guard([&] { return Done(client->impl->Subscribe(fd)); });
}

gismo_status_t gismo_next_notification(gismo_client_t* client, gismo_notification_t* out,
                                       int64_t timeout_ms) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(out != nullptr, "out-pointer is NULL");
  GISMO_CHECK_ARG(timeout_ms >= -1, "timeout_ms must be -1 (forever), 0 or positive");
  return Guard([&] { return Done(client->impl->NextNotification(out, timeout_ms)); });
}

gismo_status_t gismo_client_identity(gismo_client_t* client, uint32_t* node, uint32_t* slot) {
  GISMO_CHECK_CLIENT(client);
  if (node) *node = client->impl->node_id();
  if (slot) *slot = client->impl->slot();
  return GISMO_OK;
}

gismo_status_t gismo_region_mapping(gismo_client_t* client, const void** base, size_t* size) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(base != nullptr && size != nullptr, "out-pointer is NULL");
  *base = client->impl->region().base();
  *size = client->impl->region().size();
  return GISMO_OK;
}

gismo_status_t gismo_region_read_view(gismo_client_t* client, const void** base, size_t* size) {
  GISMO_CHECK_CLIENT(client);
  GISMO_CHECK_ARG(base != nullptr && size != nullptr, "out-pointer is NULL");
  *base = client->impl->region().read_base();
  *size = client->impl->region().size();
  return GISMO_OK;
}

}  // extern "C"
