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

#include <cstdint>
#include <cstring>
#include <functional>
#include <gismo/gismo.hpp>
#include <string>
#include <string_view>
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
  // hashed to object ids under `name_space`; timeout_ms bounds the wait for
  // another client's load (-1: forever).
  explicit Cache(Client& client, std::string name_space = {}, int64_t timeout_ms = -1)
      : client_(client), ns_(std::move(name_space)), timeout_ms_(timeout_ms) {}

  // The object id of a key (the block's; its load claim is IdOf(key) with
  // the last byte flipped).
  ObjectId IdOf(std::string_view key) const {
    std::string name = ns_;
    name.append(key);
    return ObjectId::FromName(name);
  }

  // The block for `key`, loaded by `load` if no client has it. Exactly one
  // client loads a block that many miss at once: a load claim (an unsealed
  // object) decides who; the others wait for the claim to go, and read the
  // block. If the loader fails, dies or is recovered, its claim goes and one
  // waiter loads instead.
  Result<Buffer> Get(std::string_view key, const Loader& load) {
    const ObjectId id = IdOf(key);
    ObjectId claim_id = id;
    {
      gismo_id_t c = claim_id.c_id();
      c.bytes[GISMO_ID_SIZE - 1] ^= 0xff;
      claim_id = ObjectId(c);
    }
    for (;;) {
      auto got = client_.Get(id, 0);
      if (got.ok()) {
        ++stats_.hits;
        return got;
      }
      if (got.status().code() != GISMO_ERR_TIMEOUT) return got.status();
      // Absent: take the claim, or wait while another client holds it (its
      // abort, or its recovery, wakes us and our next attempt takes it).
      auto claim = client_.GetOrCreate(claim_id, 0, {}, 0, timeout_ms_);
      if (!claim.ok()) return claim.status();
      if (!claim->load.valid()) continue;  // someone sealed a claim: not ours to use
      // Ours. The block may have been loaded while we waited.
      got = client_.Get(id, 0);
      if (got.ok()) {
        (void)claim->load.Abort();
        ++stats_.waits;
        return got;
      }
      auto bytes = load(key);
      if (!bytes.ok()) {
        (void)claim->load.Abort();
        return bytes.status();
      }
      auto created = client_.Create(id, bytes->size(), {}, GISMO_CREATE_EVICTABLE);
      if (!created.ok()) {
        (void)claim->load.Abort();
        if (created.status().code() == GISMO_ERR_OBJECT_EXISTS) continue;
        return created.status();
      }
      if (!bytes->empty()) std::memcpy(created->data(), bytes->data(), bytes->size());
      Status sealed = created->Seal();
      (void)claim->load.Abort();  // wakes the waiters: they find the block
      if (!sealed.ok()) return sealed;
      ++stats_.loads;
      // Keep the creator's reference as the caller's: the block cannot be
      // evicted before the caller has read it.
      (void)created->Detach();
      auto held = client_.Get(id, 0);
      (void)client_.Release(id);
      return held;
    }
  }

  // The block for `key` when its size is known before loading: the loader
  // writes straight into shared memory (no copy), and the store's own
  // get-or-create decides who loads.
  Result<Buffer> Get(std::string_view key, size_t size, const Filler& fill) {
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
      return held;
    }
  }

  // Marks a block recently used without reading it (CLOCK reference bit).
  Status Touch(std::string_view key) { return client_.Touch(IdOf(key)); }
  // Drops a block (the next Get loads it again).
  Status Invalidate(std::string_view key) { return client_.Delete(IdOf(key)); }

  const Stats& stats() const { return stats_; }

 private:
  Client& client_;
  std::string ns_;
  int64_t timeout_ms_;
  Stats stats_;
};

}  // namespace gismo

#endif  // GISMO_CACHE_HPP_
