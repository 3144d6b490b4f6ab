// gismo: the C++ API.
//
// A thin, header-only layer over the C API in gismo.h: one implementation,
// two languages. RAII client and buffers, Status / Result<T> errors
// (status.hpp), no exceptions.
#ifndef GISMO_GISMO_HPP_
#define GISMO_GISMO_HPP_

#include <gismo/gismo.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <gismo/status.hpp>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gismo {

namespace detail {
inline Status FromC(gismo_status_t code) {
  if (code == GISMO_OK) return Status();
  return Status(code, gismo_last_error());
}
// A std::string name passed on as a C string must hold no NUL byte (the C
// API would see a shorter name).
inline Status CheckNameBytes(const std::string& name) {
  if (name.find('\0') != std::string::npos) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "a name may not contain a NUL byte");
  }
  return Status();
}
// Why a get of `id` returned no buffer within `timeout_ms`: the object does
// not exist, is still being written, or is being deleted (GISMO_ERR_TIMEOUT
// in every case; the message tells them apart, as of when it was asked).
inline Status NotSealed(gismo_client_t* c, const gismo_id_t& id, const std::string& hex,
                        int64_t timeout_ms) {
  gismo_object_info_t info{};
  std::string why;
  if (gismo_stat(c, &id, &info) != GISMO_OK) {
    why = "does not exist (never created, or deleted and freed)";
  } else if (info.state == GISMO_STATE_DELETING) {
    why = "was deleted (it is freed when its last reader releases it)";
  } else {
    why = "is still being written by its creator (not sealed)";
  }
  std::string after = timeout_ms == 0 ? "" : " after waiting " + std::to_string(timeout_ms) + " ms";
  return Status(GISMO_ERR_TIMEOUT, "object " + hex + " " + why + after);
}
}  // namespace detail

// 20-byte object id.
class ObjectId {
 public:
  static constexpr size_t kSize = GISMO_ID_SIZE;
  ObjectId() { std::memset(id_.bytes, 0, kSize); }
  explicit ObjectId(const gismo_id_t& id) : id_(id) {}

  static ObjectId FromBytes(std::span<const uint8_t, kSize> bytes) {
    ObjectId o;
    std::memcpy(o.id_.bytes, bytes.data(), kSize);
    return o;
  }
  // Exactly 40 hex digits.
  static Result<ObjectId> FromHex(std::string_view hex) {
    if (hex.size() != 2 * kSize) {
      return Status(GISMO_ERR_INVALID_ARGUMENT, "an object id is 40 hex digits, got " +
                                                    std::to_string(hex.size()) + " characters");
    }
    ObjectId o;
    for (size_t i = 0; i < kSize; ++i) {
      int hi = HexValue(hex[2 * i]), lo = HexValue(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        return Status(GISMO_ERR_INVALID_ARGUMENT,
                      "not a hex digit in object id '" + std::string(hex) + "'");
      }
      o.id_.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    return o;
  }
  // 160 random bits. The generator is seeded with 256 bits of the kernel's
  // randomness per thread, and again in a child after fork() (which copies
  // the parent's state: both would make the same ids).
  static ObjectId Random() {
    thread_local std::mt19937_64 rng;
    thread_local pid_t seeded_in = 0;
    if (const pid_t pid = getpid(); pid != seeded_in) {
      std::random_device dev;
      std::seed_seq seed{dev(), dev(), dev(), dev(), dev(), dev(), dev(), dev()};
      rng.seed(seed);
      seeded_in = pid;
    }
    ObjectId o;
    for (size_t i = 0; i < kSize; i += 8) {
      uint64_t r = rng();
      std::memcpy(o.id_.bytes + i, &r, std::min<size_t>(8, kSize - i));
    }
    return o;
  }
  // A stable id derived from a name (a 160-bit FNV-1a-style mix: the same
  // name gives the same id in every process and language binding).
  static ObjectId FromName(std::string_view name) {
    ObjectId o;
    uint64_t h[3] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull, 0x9e3779b97f4a7c15ull};
    for (unsigned char c : name) {
      for (int k = 0; k < 3; ++k) {
        h[k] ^= c + static_cast<uint64_t>(k);
        h[k] *= 0x100000001b3ull;
        h[k] ^= h[k] >> 29;
      }
    }
    for (int k = 0; k < 3; ++k) {  // final avalanche
      uint64_t x = h[k] ^ (h[(k + 1) % 3] << 1);
      x ^= x >> 33;
      x *= 0xff51afd7ed558ccdull;
      x ^= x >> 33;
      x *= 0xc4ceb9fe1a85ec53ull;
      x ^= x >> 33;
      h[k] = x;
    }
    std::memcpy(o.id_.bytes, h, kSize);
    return o;
  }

  std::string Hex() const {
    static const char* digits = "0123456789abcdef";
    std::string s(2 * kSize, '0');
    for (size_t i = 0; i < kSize; ++i) {
      s[2 * i] = digits[id_.bytes[i] >> 4];
      s[2 * i + 1] = digits[id_.bytes[i] & 15];
    }
    return s;
  }
  const gismo_id_t& c_id() const { return id_; }
  const uint8_t* data() const { return id_.bytes; }
  bool operator==(const ObjectId& o) const {
    return std::memcmp(id_.bytes, o.id_.bytes, kSize) == 0;
  }
  bool operator<(const ObjectId& o) const { return std::memcmp(id_.bytes, o.id_.bytes, kSize) < 0; }

 private:
  static int HexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  gismo_id_t id_;
};

// The region's uuid (gismo_usage_t.region_uuid) as 32 hex digits, the one
// spelling the tools, the Python module and peers compare.
inline std::string RegionUuidHex(const gismo_usage_t& usage) {
  static const char* digits = "0123456789abcdef";
  std::string s(32, '0');
  for (int word = 0; word < 2; ++word) {
    for (int nibble = 0; nibble < 16; ++nibble) {
      s[16 * word + nibble] = digits[(usage.region_uuid[word] >> (60 - 4 * nibble)) & 15];
    }
  }
  return s;
}

class Client;

// Where a client is: its node and its slot there (gismo_client_identity).
struct ClientIdentity {
  uint32_t node = 0;
  uint32_t slot = 0;  // as in gismo_client_info_t.client; reused once the client is gone
};

// A seal or delete somewhere in the cluster (or an overflow marker).
struct Notification {
  gismo_event_t event;
  ObjectId id;
  size_t data_size = 0;
  size_t metadata_size = 0;
  uint32_t node = 0;
  uint64_t seq = 0;
  uint32_t reason = GISMO_REASON_NONE;  // gismo_event_reason_t: why it was deleted
  bool overflow() const { return event == GISMO_EVENT_OVERFLOW; }
  bool evicted() const { return reason == GISMO_REASON_EVICTED; }
};

// A client's subscription: an fd for poll/epoll/asio plus Next(). Also an
// input range: `for (const Notification& n : sub)` blocks for each event and
// ends on an error (check sub.status()).
class Subscription {
 public:
  int fd() const { return fd_; }
  Result<Notification> Next(int64_t timeout_ms = -1) {
    gismo_notification_t n{};
    gismo_status_t s = gismo_next_notification(c_, &n, timeout_ms);
    if (s != GISMO_OK) return detail::FromC(s);
    return Notification{n.event, ObjectId(n.id), n.data_size, n.metadata_size,
                        n.node,  n.seq,          n.reason};
  }
  const Status& status() const { return status_; }

  class iterator {
   public:
    using value_type = Notification;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Subscription* s) : s_(s) { ++*this; }
    const Notification& operator*() const { return cur_; }
    const Notification* operator->() const { return &cur_; }
    iterator& operator++() {
      auto r = s_->Next(-1);
      if (r.ok()) {
        cur_ = *r;
      } else {
        s_->status_ = r.status();
        s_ = nullptr;
      }
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(const iterator& o) const { return s_ == o.s_; }

   private:
    Subscription* s_ = nullptr;
    Notification cur_{};
  };
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  friend class Client;
  Subscription(gismo_client_t* c, int fd) : c_(c), fd_(fd) {}
  gismo_client_t* c_;
  int fd_;
  Status status_;
};

// A sealed object held by this client. Releases its reference when
// destroyed. Move-only. The bytes are read-only and live in shared memory.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      Reset();
      client_ = std::exchange(o.client_, nullptr);
      id_ = o.id_;
      buf_ = o.buf_;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { Reset(); }

  bool valid() const { return client_ != nullptr; }
  const ObjectId& id() const { return id_; }
  const uint8_t* data() const { return static_cast<const uint8_t*>(buf_.data); }
  size_t size() const { return buf_.data_size; }
  std::span<const uint8_t> bytes() const { return {data(), size()}; }
  std::span<const uint8_t> metadata() const {
    return {static_cast<const uint8_t*>(buf_.metadata), buf_.metadata_size};
  }
  // Releases the reference now. Safe to call twice.
  Status Release() {
    if (!client_) return Status();
    gismo_client_t* c = std::exchange(client_, nullptr);
    return detail::FromC(gismo_release(c, &id_.c_id()));
  }
  // Gives up ownership without releasing (the caller calls gismo_release).
  gismo_buffer_t Detach() {
    client_ = nullptr;
    return buf_;
  }

 private:
  friend class Client;
  Buffer(gismo_client_t* c, const ObjectId& id, const gismo_buffer_t& b)
      : client_(c), id_(id), buf_(b) {}
  void Reset() { (void)Release(); }

  gismo_client_t* client_ = nullptr;
  ObjectId id_;
  gismo_buffer_t buf_{};
};

// An unsealed object being written by its creator. Seal() publishes it;
// destroying it unsealed aborts it. After Seal() it holds the creator's
// reference until destroyed or SealAndRelease()d (Abort() then fails with
// GISMO_ERR_OBJECT_ALREADY_SEALED and keeps it). So does an object sealed
// although its Seal() failed (a non-coherent seal applied after its wait
// timed out): Abort() finds it sealed, and the destructor gives the
// reference back.
class MutableBuffer {
 public:
  MutableBuffer() = default;
  MutableBuffer(MutableBuffer&& o) noexcept { *this = std::move(o); }
  MutableBuffer& operator=(MutableBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      client_ = std::exchange(o.client_, nullptr);
      id_ = o.id_;
      data_ = o.data_;
      size_ = o.size_;
      sealed_ = o.sealed_;
    }
    return *this;
  }
  MutableBuffer(const MutableBuffer&) = delete;
  MutableBuffer& operator=(const MutableBuffer&) = delete;
  ~MutableBuffer() { Reset(); }

  bool valid() const { return client_ != nullptr; }
  const ObjectId& id() const { return id_; }
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<uint8_t> bytes() const { return {data_, size_}; }

  Status Seal() {
    if (!client_) return Status(GISMO_ERR_INVALID_ARGUMENT, "empty buffer");
    Status s = detail::FromC(gismo_seal(client_, &id_.c_id()));
    if (s.ok()) sealed_ = true;
    return s;
  }
  Status Abort() {
    if (!client_) return Status(GISMO_ERR_INVALID_ARGUMENT, "empty buffer");
    if (sealed_) {
      return Status(GISMO_ERR_OBJECT_ALREADY_SEALED,
                    "object " + id_.Hex() +
                        " is sealed: SealAndRelease() or the destructor gives back its reference");
    }
    const gismo_status_t st = gismo_abort(client_, &id_.c_id());
    // Sealed after all (a non-coherent seal whose answer came too late): as
    // after Seal(), the creator's reference stays this object's to give back.
    if (st == GISMO_ERR_OBJECT_ALREADY_SEALED) {
      sealed_ = true;
    } else {
      client_ = nullptr;
    }
    return detail::FromC(st);
  }
  // Seals if needed, then gives back the creator's reference.
  Status SealAndRelease() {
    if (!sealed_) {
      Status s = Seal();
      if (!s.ok()) return s;
    }
    gismo_client_t* c = std::exchange(client_, nullptr);
    return detail::FromC(gismo_release(c, &id_.c_id()));
  }
  // Gives up ownership: neither sealed, aborted nor released by this object.
  uint8_t* Detach() {
    client_ = nullptr;
    return data_;
  }

 private:
  friend class Client;
  MutableBuffer(gismo_client_t* c, const ObjectId& id, void* data, size_t size)
      : client_(c), id_(id), data_(static_cast<uint8_t*>(data)), size_(size) {}
  void Reset() {
    if (!client_) return;
    gismo_client_t* c = std::exchange(client_, nullptr);
    // An abort refused because the object is sealed (a non-coherent seal
    // applied after its wait timed out) leaves the creator's reference to
    // give back, or it would be held until the client disconnects.
    if (!sealed_ && gismo_abort(c, &id_.c_id()) != GISMO_ERR_OBJECT_ALREADY_SEALED) return;
    gismo_release(c, &id_.c_id());
  }

  gismo_client_t* client_ = nullptr;
  ObjectId id_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool sealed_ = false;
};

// A connection to a gismo manager and its shared region. Move-only;
// disconnects when destroyed. Buffers must not outlive their client.
class Client {
 public:
  Client() = default;
  Client(Client&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Client& operator=(Client&& o) noexcept {
    if (this != &o) {
      Close();
      c_ = std::exchange(o.c_, nullptr);
    }
    return *this;
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() { Close(); }

  // address: "unix:/path", "tcp:host:port", or empty for $GISMO_ADDRESS.
  static Result<Client> Connect(const std::string& address = {}) {
    ConnectOptions options;
    options.address = address;
    return ConnectWith(options);
  }

  // Empty fields mean their environment variable (gismo_connect_options_t).
  struct ConnectOptions {
    std::string address;
    std::string key_file;
    std::string region_path;
  };
  static Result<Client> ConnectWith(const ConnectOptions& options) {
    gismo_connect_options_t o{};
    o.address = options.address.c_str();
    o.key_file = options.key_file.c_str();
    o.region_path = options.region_path.c_str();
    gismo_client_t* c = nullptr;
    gismo_status_t s = gismo_connect_with_options(&o, &c);
    if (s != GISMO_OK) return detail::FromC(s);
    Client client;
    client.c_ = c;
    return client;
  }

  Status Disconnect() {
    if (!c_) return Status();
    return detail::FromC(gismo_disconnect(std::exchange(c_, nullptr)));
  }

  // flags: gismo_create_flag_t bits (GISMO_CREATE_OWNED, GISMO_CREATE_EVICTABLE).
  Result<MutableBuffer> Create(const ObjectId& id, size_t size,
                               std::span<const uint8_t> metadata = {}, uint32_t flags = 0) {
    void* data = nullptr;
    gismo_status_t s = gismo_create_with_flags(c_, &id.c_id(), size, metadata.data(),
                                               metadata.size(), flags, &data);
    if (s != GISMO_OK) return detail::FromC(s);
    return MutableBuffer(c_, id, data, size);
  }

  // Creates, copies, seals and releases.
  Status Put(const ObjectId& id, std::span<const uint8_t> data,
             std::span<const uint8_t> metadata = {}, uint32_t flags = 0) {
    return detail::FromC(gismo_put_with_flags(c_, &id.c_id(), data.data(), data.size(),
                                              metadata.data(), metadata.size(), flags));
  }
  Status Put(const ObjectId& id, std::string_view data, uint32_t flags = 0) {
    return Put(id,
               std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()),
               {}, flags);
  }

  Status Seal(const ObjectId& id) { return detail::FromC(gismo_seal(c_, &id.c_id())); }
  Status Abort(const ObjectId& id) { return detail::FromC(gismo_abort(c_, &id.c_id())); }
  Status Release(const ObjectId& id) { return detail::FromC(gismo_release(c_, &id.c_id())); }
  Status Delete(const ObjectId& id) { return detail::FromC(gismo_delete(c_, &id.c_id())); }
  Result<bool> Contains(const ObjectId& id) {
    bool b = false;
    gismo_status_t s = gismo_contains(c_, &id.c_id(), &b);
    if (s != GISMO_OK) return detail::FromC(s);
    return b;
  }

  // One buffer per id, in order; an invalid Buffer for an object that was
  // not sealed within timeout_ms.
  Result<std::vector<Buffer>> Get(std::span<const ObjectId> ids, int64_t timeout_ms = -1) {
    std::vector<gismo_id_t> cids(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) cids[i] = ids[i].c_id();
    std::vector<gismo_buffer_t> bufs(ids.size());
    gismo_status_t s = gismo_get(c_, cids.data(), cids.size(), timeout_ms, bufs.data());
    if (s != GISMO_OK) return detail::FromC(s);
    std::vector<Buffer> out;
    out.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      out.push_back(bufs[i].data ? Buffer(c_, ids[i], bufs[i]) : Buffer());
    }
    return out;
  }
  // A single object; GISMO_ERR_TIMEOUT if it was not sealed in time.
  Result<Buffer> Get(const ObjectId& id, int64_t timeout_ms = -1) {
    gismo_buffer_t b{};
    gismo_status_t s = gismo_get(c_, &id.c_id(), 1, timeout_ms, &b);
    if (s != GISMO_OK) return detail::FromC(s);
    if (!b.data) {
      return detail::NotSealed(c_, id.c_id(), id.Hex(), timeout_ms);
    }
    return Buffer(c_, id, b);
  }

  // Load once (gismo_get_or_create): exactly one of `got` (the sealed
  // object, held) and `load` (created for this client to fill and seal, or
  // abort) is valid. GISMO_ERR_TIMEOUT if neither came in time.
  struct GetOrCreateResult {
    Buffer got;
    MutableBuffer load;
  };
  Result<GetOrCreateResult> GetOrCreate(const ObjectId& id, size_t size,
                                        std::span<const uint8_t> metadata = {},
                                        uint32_t flags = GISMO_CREATE_EVICTABLE,
                                        int64_t timeout_ms = -1) {
    gismo_buffer_t b{};
    void* data = nullptr;
    gismo_status_t s = gismo_get_or_create(c_, &id.c_id(), size, metadata.data(), metadata.size(),
                                           flags, timeout_ms, &b, &data);
    if (s != GISMO_OK) return detail::FromC(s);
    GetOrCreateResult r;
    if (data != nullptr) {
      r.load = MutableBuffer(c_, id, data, size);
    } else {
      r.got = Buffer(c_, id, b);
    }
    return r;
  }
  // Evicts unheld evictable objects until `bytes` are evicted (or none is
  // left), whatever is free already; returns the bytes evicted.
  Result<uint64_t> Evict(uint64_t bytes) {
    uint64_t evicted = 0;
    gismo_status_t s = gismo_evict(c_, bytes, &evicted);
    if (s != GISMO_OK) return detail::FromC(s);
    return evicted;
  }
  // Marks an evictable object as recently used.
  Status Touch(const ObjectId& id) { return detail::FromC(gismo_touch(c_, &id.c_id())); }

  Result<gismo_object_info_t> Stat(const ObjectId& id) {
    gismo_object_info_t info{};
    gismo_status_t s = gismo_stat(c_, &id.c_id(), &info);
    if (s != GISMO_OK) return detail::FromC(s);
    return info;
  }
  Result<std::vector<gismo_object_info_t>> List() {
    return SizedList<gismo_object_info_t>(
        [this](gismo_object_info_t* infos, size_t capacity, size_t* count) {
          return gismo_list(c_, infos, capacity, count);
        },
        "store");
  }
  // Names (see gismo.h, "names"): a flat namespace of names bound to object
  // ids, in the region. A CONFLICT status from SwapName/BindNameIfUnbound
  // means the name was bound otherwise than expected.
  Status BindName(const std::string& name, const ObjectId& id) {
    if (Status bad = detail::CheckNameBytes(name); !bad.ok()) return bad;
    return detail::FromC(gismo_bind_name(c_, name.c_str(), &id.c_id()));
  }
  // Binds `name` to `desired` only if it is bound to `expected` now.
  Status SwapName(const std::string& name, const ObjectId& expected, const ObjectId& desired) {
    if (Status bad = detail::CheckNameBytes(name); !bad.ok()) return bad;
    return detail::FromC(gismo_swap_name(c_, name.c_str(), &expected.c_id(), &desired.c_id()));
  }
  // Binds `name` to `id` only if it is not bound.
  Status BindNameIfUnbound(const std::string& name, const ObjectId& id) {
    if (Status bad = detail::CheckNameBytes(name); !bad.ok()) return bad;
    return detail::FromC(gismo_swap_name(c_, name.c_str(), nullptr, &id.c_id()));
  }
  Status UnbindName(const std::string& name, const ObjectId* expected = nullptr) {
    if (Status bad = detail::CheckNameBytes(name); !bad.ok()) return bad;
    return detail::FromC(
        gismo_unbind_name(c_, name.c_str(), expected != nullptr ? &expected->c_id() : nullptr));
  }
  // OBJECT_NOT_FOUND if the name is not bound.
  Result<gismo_name_info_t> LookupName(const std::string& name) {
    if (Status bad = detail::CheckNameBytes(name); !bad.ok()) return bad;
    gismo_name_info_t info{};
    gismo_status_t s = gismo_lookup_name(c_, name.c_str(), &info);
    if (s != GISMO_OK) return detail::FromC(s);
    return info;
  }
  // Waits for `name` to be bound otherwise than to `known` (nullptr: to be
  // bound at all) and returns the new binding; see gismo_wait_name.
  Result<gismo_name_info_t> WaitName(const std::string& name, const ObjectId* known,
                                     int64_t timeout_ms) {
    if (Status bad = detail::CheckNameBytes(name); !bad.ok()) return bad;
    gismo_name_info_t info{};
    gismo_status_t s = gismo_wait_name(
        c_, name.c_str(), known != nullptr ? &known->c_id() : nullptr, timeout_ms, &info);
    if (s != GISMO_OK) return detail::FromC(s);
    return info;
  }
  Result<std::vector<gismo_name_info_t>> ListNames(const std::string& prefix = "") {
    if (Status bad = detail::CheckNameBytes(prefix); !bad.ok()) return bad;
    return SizedList<gismo_name_info_t>(
        [this, &prefix](gismo_name_info_t* infos, size_t capacity, size_t* count) {
          return gismo_list_names(c_, prefix.c_str(), infos, capacity, count);
        },
        "name table");
  }
  Result<gismo_usage_t> Usage() {
    gismo_usage_t u{};
    gismo_status_t s = gismo_usage(c_, &u);
    if (s != GISMO_OK) return detail::FromC(s);
    return u;
  }
  Result<std::vector<gismo_client_info_t>> Clients() {
    return SizedList<gismo_client_info_t>(
        [this](gismo_client_info_t* infos, size_t capacity, size_t* count) {
          return gismo_list_clients(c_, infos, capacity, count);
        },
        "client table");
  }
  // Declares a client (by id or slot) or a node fenced: see gismo_fence.
  // Returns the manager's account of what it recovered.
  Result<std::string> Fence(gismo_fence_target_t target, uint64_t value) {
    // Room for any account the manager sends (its reply frame's message),
    // not cut at a small fixed size.
    std::string report(64 << 10, '\0');
    gismo_status_t s = gismo_fence(c_, target, value, report.data(), report.size());
    if (s != GISMO_OK) return detail::FromC(s);
    report.resize(std::strlen(report.c_str()));
    return report;
  }
  Result<ClientIdentity> Identity() const {
    ClientIdentity identity;
    gismo_status_t s = gismo_client_identity(c_, &identity.node, &identity.slot);
    if (s != GISMO_OK) return detail::FromC(s);
    return identity;
  }
  // Notifications of every sealed object, then of each seal and delete.
  Result<Subscription> Subscribe() {
    int fd = -1;
    gismo_status_t s = gismo_subscribe(c_, &fd);
    if (s != GISMO_OK) return detail::FromC(s);
    return Subscription(c_, fd);
  }
  // Calls fn for each notification until it returns false or an error
  // occurs (returned). Blocks the calling thread.
  Status Watch(const std::function<bool(const Notification&)>& fn) {
    auto sub = Subscribe();
    if (!sub.ok()) return sub.status();
    for (;;) {
      auto n = sub->Next(-1);
      if (!n.ok()) return n.status();
      if (!fn(*n)) return Status();
    }
  }

  // Whether [p, p + n) lies inside this client's mapping of the region.
  bool InRegion(const void* p, size_t n = 1) const { return RegionOffset(p, n).has_value(); }

  // The offset in the region of [p, p + n) if it lies in this client's
  // mapping or its read view (equal on every node for the same bytes).
  std::optional<uint64_t> RegionOffset(const void* p, size_t n = 1) const {
    const void* base = nullptr;
    size_t size = 0;
    auto q = reinterpret_cast<uintptr_t>(p);
    for (auto view : {gismo_region_mapping, gismo_region_read_view}) {
      if (view(c_, &base, &size) != GISMO_OK) return std::nullopt;
      auto b = reinterpret_cast<uintptr_t>(base);
      if (q >= b && n <= size && q - b <= size - n) return q - b;
    }
    return std::nullopt;
  }

  gismo_client_t* c_client() const { return c_; }
  bool connected() const { return c_ != nullptr; }

 private:
  void Close() {
    if (c_) gismo_disconnect(std::exchange(c_, nullptr));
  }
  // Everything a C list call (`fill(infos, capacity, &count)`, like
  // gismo_list) has: sized by a call with capacity 0, then sized again while
  // entries come between the two calls (INTERNAL after 8 tries; `what` names
  // the table in that error).
  template <typename Info, typename Fill>
  static Result<std::vector<Info>> SizedList(const Fill& fill, const char* what) {
    for (int attempt = 0; attempt < 8; ++attempt) {
      size_t count = 0;
      gismo_status_t s = fill(nullptr, 0, &count);
      if (s != GISMO_OK) return detail::FromC(s);
      std::vector<Info> infos(count + count / 8 + 16);
      s = fill(infos.data(), infos.size(), &count);
      if (s != GISMO_OK) return detail::FromC(s);
      if (count <= infos.size()) {
        infos.resize(count);
        return infos;
      }
    }
    return Status(GISMO_ERR_INTERNAL, std::string(what) + " kept growing while listing");
  }
  gismo_client_t* c_ = nullptr;
};

}  // namespace gismo

template <>
struct std::hash<gismo::ObjectId> {
  size_t operator()(const gismo::ObjectId& id) const noexcept {
    uint64_t h;
    std::memcpy(&h, id.data(), sizeof(h));
    return static_cast<size_t>(h);
  }
};

#endif  // GISMO_GISMO_HPP_
