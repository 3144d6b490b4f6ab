// gismo::Cache: one shared cache for every process on every node.
//
// A database node (or any reader of immutable blocks) asks for a block by
// key; the first node to miss loads it, every other node that misses at the
// same time waits for that load, and everyone reads the one copy by pointer.
// Blocks are evictable objects: when the store is full, creates evict the
// least recently used blocks nobody holds (CLOCK; a Get counts as a use).
// Cached blocks are immutable, so there is nothing to keep coherent: a
// changed block is a new key (put a version in the key).
//
//   gismo::Cache cache(client, "tpch/lineitem/");
//   auto block = cache.Get("block-17", [&](std::string_view key) {
//     return ReadAndDecompress(key);            // std::vector<uint8_t>
//   });
//   if (!block.ok()) ...;
//   Scan(block->data(), block->size());         // held until `block` dies
//
// Header-only, over gismo.hpp (and so the C API).
#ifndef GISMO_CACHE_HPP_
#define GISMO_CACHE_HPP_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <gismo/gismo.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace gismo {

class Cache {
 public:
  // Loads a block: returns its bytes, or an error that Get passes on.
  using Loader = std::function<Result<std::vector<uint8_t>>(std::string_view key)>;
  // Writes a block of a size known beforehand straight into shared memory.
  using Filler = std::function<Status(std::string_view key, std::span<uint8_t> out)>;

  struct Stats {
    uint64_t hits = 0;   // found sealed
    uint64_t loads = 0;  // loaded by this cache object
    uint64_t waits = 0;  // another client was loading it: waited for its seal
  };

  // `client` must outlive the cache and the buffers it returns. Keys are
  // hashed to object ids under `name_space` (IdOf): caches of one namespace
  // share their blocks, caches of different namespaces never do; timeout_ms bounds how long a Get
  // waits, for another client's load or for an invalidated block to be freed
  // (-1: forever; below -1, Get gives GISMO_ERR_INVALID_ARGUMENT).
  explicit Cache(Client& client, std::string name_space = {}, int64_t timeout_ms = -1)
      : client_(client), ns_(std::move(name_space)), timeout_ms_(timeout_ms) {}

  // The object id of a key (the block's; its load claim is IdOf(key) with
  // the last byte flipped): ObjectId::FromName of "gismo.cache:" + the
  // namespace's length in decimal + ":" + namespace + key. The length keeps
  // namespaces apart ("img" and "2x" never meet "img2" and "x"), the tag
  // keeps blocks apart from objects named by applications. Python's
  // gismo.Cache.id_of is the same function.
  ObjectId IdOf(std::string_view key) const {
    std::string name = "gismo.cache:" + std::to_string(ns_.size()) + ":" + ns_;
    name.append(key);
    return ObjectId::FromName(name);
  }

  // The block for `key`, loaded by `load` if no client has it. Exactly one
  // client loads a block that many miss at once: a load claim (an unsealed
  // object) decides who; the others wait for the claim to go, and read the
  // block. If the loader fails, dies or is recovered, its claim goes and one
  // waiter loads instead. `load` runs at most once per Get: an invalidated
  // block that a reader still holds keeps its id until it is released, and
  // the loaded bytes wait for it (with backoff, holding the claim).
  // GISMO_ERR_TIMEOUT once timeout_ms has passed; GISMO_ERR_OBJECT_EXISTS if
  // a sealed object, which no cache client makes, has the claim's id.
  Result<Buffer> Get(std::string_view key, const Loader& load) {
    const ObjectId id = IdOf(key);
    ObjectId claim_id = id;
    {
      gismo_id_t c = claim_id.c_id();
      c.bytes[GISMO_ID_SIZE - 1] ^= 0xff;
      claim_id = ObjectId(c);
    }
    if (timeout_ms_ < -1) return BadTimeout();
    Deadline wait(timeout_ms_, key);
    std::optional<std::vector<uint8_t>> bytes;  // the loader's, once loaded
    for (;;) {
      auto got = client_.Get(id, 0);
      if (got.ok()) {
        ++stats_.hits;
        return got;
      }
      if (got.status().code() != GISMO_ERR_TIMEOUT) return got.status();
      // Absent: take the claim, or wait while another client holds it (its
      // abort, or its recovery, wakes us and our next attempt takes it).
      auto claim = client_.GetOrCreate(claim_id, 0, {}, 0, wait.LeftMs());
      if (!claim.ok()) return claim.status();
      if (!claim->load.valid()) {
        // A claim is an empty object that its client aborts, never seals:
        // this one was put by something outside the cache, and waiting for
        // it to go would wait for ever.
        return Status(GISMO_ERR_OBJECT_EXISTS,
                      "cache block '" + std::string(key) + "': the id of its load claim, " +
                          claim_id.Hex() +
                          ", holds a sealed object, which no cache client makes: something "
                          "outside the cache put it there (delete it)");
      }
      // Ours. The block may have been loaded while we waited.
      got = client_.Get(id, 0);
      if (got.ok()) {
        (void)claim->load.Abort();
        ++stats_.waits;
        return got;
      }
      // Only an absent block is loaded: another failure (the connection,
      // this client's reference limit) would fail the load's create too.
      if (got.status().code() != GISMO_ERR_TIMEOUT) {
        (void)claim->load.Abort();
        return got.status();
      }
      if (!bytes) {
        auto loaded = load(key);
        if (!loaded.ok()) {
          (void)claim->load.Abort();
          return loaded.status();
        }
        bytes = std::move(*loaded);
        ++stats_.loads;
      }
      // The block's id is taken while an invalidated copy is still held
      // (deleting): the claim stays ours until that copy is freed.
      auto created = client_.Create(id, bytes->size(), {}, GISMO_CREATE_EVICTABLE);
      while (!created.ok() && created.status().code() == GISMO_ERR_OBJECT_EXISTS) {
        got = client_.Get(id, 0);  // put by a client outside the protocol
        if (got.ok()) {
          (void)claim->load.Abort();
          ++stats_.waits;
          return got;
        }
        if (Status s = wait.Pause("its invalidated copy is still held"); !s.ok()) {
          (void)claim->load.Abort();
          return s;
        }
        created = client_.Create(id, bytes->size(), {}, GISMO_CREATE_EVICTABLE);
      }
      if (!created.ok()) {
        (void)claim->load.Abort();
        return created.status();
      }
      if (!bytes->empty()) std::memcpy(created->data(), bytes->data(), bytes->size());
      Status sealed = created->Seal();
      (void)claim->load.Abort();  // wakes the waiters: they find the block
      if (!sealed.ok()) return sealed;
      // Keep the creator's reference as the caller's: the block cannot be
      // evicted before the caller has read it.
      (void)created->Detach();
      auto held = client_.Get(id, 0);
      (void)client_.Release(id);
      // Invalidated between the seal and the get: the loaded bytes are put
      // again.
      if (!held.ok() && held.status().code() == GISMO_ERR_TIMEOUT) continue;
      return held;
    }
  }

  // The block for `key` when its size is known before loading: the loader
  // writes straight into shared memory (no copy), and the store's own
  // get-or-create decides who loads.
  Result<Buffer> Get(std::string_view key, size_t size, const Filler& fill) {
    if (timeout_ms_ < -1) return BadTimeout();
    const ObjectId id = IdOf(key);
    for (;;) {
      auto r = client_.GetOrCreate(id, size, {}, GISMO_CREATE_EVICTABLE, timeout_ms_);
      if (!r.ok()) return r.status();
      if (r->got.valid()) {
        ++stats_.hits;
        return std::move(r->got);
      }
      if (Status s = fill(key, r->load.bytes()); !s.ok()) return s;  // aborted by ~MutableBuffer
      if (Status s = r->load.Seal(); !s.ok()) return s;
      ++stats_.loads;
      (void)r->load.Detach();  // the creator's reference becomes the caller's
      auto held = client_.Get(id, 0);
      (void)client_.Release(id);
      // Invalidated between the seal and the get: loaded again.
      if (!held.ok() && held.status().code() == GISMO_ERR_TIMEOUT) continue;
      return held;
    }
  }

  // Marks a block recently used without reading it (CLOCK reference bit).
  Status Touch(std::string_view key) { return client_.Touch(IdOf(key)); }
  // Drops a block (the next Get loads it again).
  Status Invalidate(std::string_view key) { return client_.Delete(IdOf(key)); }

  const Stats& stats() const { return stats_; }

 private:
  Status BadTimeout() const {
    return Status(
        GISMO_ERR_INVALID_ARGUMENT,
        "timeout_ms must be -1 (forever), 0 or positive, got " + std::to_string(timeout_ms_));
  }

  // The time one Get may take (timeout_ms, -1: forever), and its backoff
  // while an invalidated block is still held.
  class Deadline {
   public:
    Deadline(int64_t timeout_ms, std::string_view key)
        : timeout_ms_(timeout_ms), key_(key), start_(std::chrono::steady_clock::now()) {}
    // What is left for a waiting call: -1 (forever) or >= 0 ms.
    int64_t LeftMs() const {
      if (timeout_ms_ < 0) return -1;
      const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - start_)
                             .count();
      return spent >= timeout_ms_ ? 0 : timeout_ms_ - spent;
    }
    // Sleeps the next backoff step, or GISMO_ERR_TIMEOUT if the deadline
    // has passed (so a timeout of 0 still tries once).
    Status Pause(std::string_view why) {
      auto step = pause_;
      if (timeout_ms_ >= 0) {
        const int64_t left = LeftMs();
        if (left == 0) {
          return Status(GISMO_ERR_TIMEOUT, "cache block '" + key_ + "': " + std::string(why) +
                                               " after " + std::to_string(timeout_ms_) + " ms");
        }
        step = std::min(step, std::chrono::milliseconds(left));
      }
      std::this_thread::sleep_for(step);
      pause_ = std::min(pause_ * 2, kMaxPause);
      return Status();
    }

   private:
    static constexpr std::chrono::milliseconds kMaxPause{50};
    const int64_t timeout_ms_;
    const std::string key_;
    const std::chrono::steady_clock::time_point start_;
    std::chrono::milliseconds pause_{1};
  };

  Client& client_;
  std::string ns_;
  int64_t timeout_ms_;
  Stats stats_;
};

}  // namespace gismo

#endif  // GISMO_CACHE_HPP_
