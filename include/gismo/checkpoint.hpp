// gismo checkpoint sets: a state saved as objects and published by name, so
// that a standby on another host restores it by pointer.
//
// A set is a name S of the region's name table. Generation g of S is
// written by one writer, which first claims it: it puts a small "intent"
// object whose id is derived from (S, g) and which holds a random nonce. A
// later writer of g takes the generation over: it deletes the earlier
// writer's claim and objects first (that one, if it still runs, then loses
// at step 3); two Begins racing on one generation: the second to put its
// claim gets GISMO_ERR_CONFLICT. Its chunks and
// manifest have ids derived from (S, g, nonce) (ChunkId, ManifestId), so no
// two writers' objects ever collide. Then:
//   1. each chunk is created, written and sealed;
//   2. the manifest (generation, nonce, chunk ids, sizes and XXH64
//      checksums, the caller's metadata, and an XXH64 of all that) is
//      sealed last;
//   3. the manifest is published by a compare-and-swap of S from the
//      manifest of g - 1 to that of g (or "only if unbound" for the first):
//      readers see g - 1 or g whole, never a part;
//   4. then generation g - 1 is deleted (a reader that holds it keeps it
//      until it lets go: deletes are deferred).
// Who cleans up after a writer that died:
//  - before 3: its unsealed chunk is aborted by the manager's recovery; its
//    sealed chunks and manifest are found by the next writer of g from the
//    intent's nonce and deleted before it claims g itself (Begin);
//  - between 3 and 4: the next writer deletes g - 1 the same way (Begin).
// So nothing unpublished is ever visible, and nothing is leaked past the
// next checkpoint. A stale writer (e.g. an active node that resumes after
// its standby took over) loses the swap with GISMO_ERR_CONFLICT and
// publishes nothing; objects it writes after another writer removed its
// leftovers are its own to delete (it does, unless it dies: with objects
// owned by their creating client, deleted when it dies, that gap closes).
//
// Header-only, on top of gismo.hpp; needs <xxhash.h> (libxxhash-dev, which
// libgismo depends on already; XXH64 is inlined). The Python package writes and reads the same
// format (gismo.checkpoint).
#ifndef GISMO_CHECKPOINT_HPP_
#define GISMO_CHECKPOINT_HPP_

// XXH64 inlined: a program needs the header of libxxhash, not its library.
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

#include <cstdint>
#include <cstring>
#include <gismo/gismo.hpp>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gismo::checkpoint {

inline constexpr uint64_t kManifestMagic = 0x31544b43534d4947ull;  // "GISMCKT1"
inline constexpr uint64_t kChecksumSeed = 0x676973636b7074ull;
// A set's manifest may list at most this many chunks.
inline constexpr uint64_t kMaxChunks = 1u << 20;

inline std::string GenerationKey(std::string_view set, uint64_t generation, uint64_t nonce) {
  return std::string(set) + "#" + std::to_string(generation) + "." + std::to_string(nonce);
}
inline ObjectId ChunkId(std::string_view set, uint64_t generation, uint64_t nonce, uint64_t index) {
  return ObjectId::FromName(GenerationKey(set, generation, nonce) + "/chunk/" +
                            std::to_string(index));
}
inline ObjectId ManifestId(std::string_view set, uint64_t generation, uint64_t nonce) {
  return ObjectId::FromName(GenerationKey(set, generation, nonce) + "/manifest");
}
// The claim of generation `generation`: 8 bytes, the writer's nonce.
inline ObjectId IntentId(std::string_view set, uint64_t generation) {
  return ObjectId::FromName(std::string(set) + "#" + std::to_string(generation) + "/intent");
}
inline uint64_t Checksum(const void* data, size_t size) { return XXH64(data, size, kChecksumSeed); }

struct ChunkRef {
  ObjectId id;
  uint64_t size = 0;
  uint64_t checksum = 0;
};

// A manifest's bytes, all u64 little-endian: magic, generation, nonce, chunk
// count n, metadata size m; n × (20 id bytes, 4 zero bytes, size, checksum); m
// bytes of metadata, zero padded to 8; XXH64 of everything before.
struct Manifest {
  uint64_t generation = 0;
  uint64_t nonce = 0;
  std::vector<ChunkRef> chunks;
  std::string metadata;

  std::vector<uint8_t> Encode() const {
    std::vector<uint8_t> out;
    auto put = [&out](uint64_t v) {
      for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
    };
    put(kManifestMagic);
    put(generation);
    put(nonce);
    put(chunks.size());
    put(metadata.size());
    for (const ChunkRef& c : chunks) {
      out.insert(out.end(), c.id.c_id().bytes, c.id.c_id().bytes + ObjectId::kSize);
      out.insert(out.end(), 4, 0);
      put(c.size);
      put(c.checksum);
    }
    out.insert(out.end(), metadata.begin(), metadata.end());
    out.insert(out.end(), (8 - metadata.size() % 8) % 8, 0);
    put(Checksum(out.data(), out.size()));
    return out;
  }

  // Every count and size is checked against the bytes there are.
  static Result<Manifest> Decode(std::span<const uint8_t> b) {
    auto bad = [](const std::string& why) {
      return Status(GISMO_ERR_BAD_REGION, "checkpoint manifest is corrupt: " + why);
    };
    auto get = [&b](size_t at) {
      uint64_t v = 0;
      for (int i = 0; i < 8; ++i) v |= uint64_t{b[at + i]} << (8 * i);
      return v;
    };
    if (b.size() < 48 || b.size() % 8 != 0) return bad("its size is " + std::to_string(b.size()));
    if (get(0) != kManifestMagic) return bad("wrong magic number");
    if (get(b.size() - 8) != Checksum(b.data(), b.size() - 8)) return bad("checksum mismatch");
    Manifest m;
    m.generation = get(8);
    m.nonce = get(16);
    const uint64_t n = get(24), msize = get(32);
    if (n > kMaxChunks || msize > b.size() || 48 + n * 40 + (msize + 7) / 8 * 8 != b.size()) {
      return bad("its counts do not match its size");
    }
    size_t at = 40;
    for (uint64_t i = 0; i < n; ++i, at += 40) {
      ChunkRef c;
      c.id = ObjectId::FromBytes(
          std::span<const uint8_t, ObjectId::kSize>(b.data() + at, ObjectId::kSize));
      c.size = get(at + 24);
      c.checksum = get(at + 32);
      m.chunks.push_back(c);
    }
    m.metadata.assign(reinterpret_cast<const char*>(b.data() + at), msize);
    return m;
  }
};

namespace detail {
// Deletes the objects of generation `generation` of `set` written by the
// writer whose nonce its intent holds: the chunks 0, 1, ... up to the first
// that does not exist (a writer makes them in order, and a dead writer's
// unsealed chunk is aborted by recovery), the manifest, then the intent.
// OBJECT_NOT_SEALED if a chunk is still being written (its writer is alive,
// or suspected and not yet fenced: try again later).
inline Status DeleteGeneration(Client& c, std::string_view set, uint64_t generation) {
  const ObjectId intent = IntentId(set, generation);
  uint64_t nonce = 0;
  {
    auto b = c.Get(intent, 0);
    if (!b.ok()) {
      const gismo_status_t code = b.status().code();
      return code == GISMO_ERR_OBJECT_NOT_FOUND || code == GISMO_ERR_TIMEOUT ? Status()
                                                                             : b.status();
    }
    if (b->size() != sizeof nonce) {
      return Status(GISMO_ERR_BAD_REGION, "checkpoint intent " + intent.Hex() + " is corrupt");
    }
    std::memcpy(&nonce, b->data(), sizeof nonce);
  }
  for (uint64_t i = 0; i < kMaxChunks; ++i) {
    Status s = c.Delete(ChunkId(set, generation, nonce, i));
    if (s.code() == GISMO_ERR_OBJECT_NOT_FOUND) break;
    if (!s.ok()) return s;
  }
  Status s = c.Delete(ManifestId(set, generation, nonce));
  if (!s.ok() && s.code() != GISMO_ERR_OBJECT_NOT_FOUND) return s;
  s = c.Delete(intent);
  return s.ok() || s.code() == GISMO_ERR_OBJECT_NOT_FOUND ? Status() : s;
}

// The generation published under `set` and its manifest id; found false
// (generation 0) if the name is not bound.
inline Status Published(Client& c, std::string_view set, bool* found, ObjectId* manifest_id,
                        uint64_t* generation) {
  *found = false;
  *generation = 0;
  auto b = c.LookupName(std::string(set));
  if (!b.ok()) return b.status().code() == GISMO_ERR_OBJECT_NOT_FOUND ? Status() : b.status();
  *found = true;
  *manifest_id = ObjectId(b->id);
  auto m = c.Get(*manifest_id, 0);
  if (!m.ok()) return m.status();
  auto decoded = Manifest::Decode(m->bytes());
  if (!decoded.ok()) return decoded.status();
  *generation = decoded->generation;
  return Status();
}

inline uint64_t RandomNonce() {
  std::random_device rd;
  return uint64_t{rd()} << 32 | rd();
}
}  // namespace detail

// Writes one checkpoint of a set. Begin, AddChunk..., Commit. Destroyed
// without Commit, it deletes what it wrote (a writer that dies instead
// leaves that to the next Begin).
class Writer {
 public:
  static Result<Writer> Begin(Client& c, std::string set) {
    Writer w(c, std::move(set));
    bool found = false;
    if (Status s = detail::Published(c, w.set_, &found, &w.previous_, &w.previous_generation_);
        !s.ok()) {
      return s;
    }
    w.had_previous_ = found;
    w.manifest_.generation = w.previous_generation_ + 1;
    w.manifest_.nonce = detail::RandomNonce();
    // Leftovers: an unpublished generation, and the published one's
    // predecessor if its writer died before deleting it.
    if (Status s = detail::DeleteGeneration(c, w.set_, w.manifest_.generation); !s.ok()) return s;
    if (found && w.previous_generation_ > 0) {
      if (Status s = detail::DeleteGeneration(c, w.set_, w.previous_generation_ - 1); !s.ok()) {
        return s;
      }
    }
    // The claim: a writer that began meanwhile has it already.
    const uint64_t nonce = w.manifest_.nonce;
    Status s = c.Put(IntentId(w.set_, w.manifest_.generation),
                     std::string_view(reinterpret_cast<const char*>(&nonce), sizeof nonce));
    if (s.code() == GISMO_ERR_OBJECT_EXISTS) {
      return Status(GISMO_ERR_CONFLICT, "another writer is writing generation " +
                                            std::to_string(w.manifest_.generation) +
                                            " of checkpoint '" + w.set_ + "'");
    }
    if (!s.ok()) return s;
    w.claimed_ = true;
    return w;
  }

  Writer(Writer&& o) noexcept
      : client_(std::exchange(o.client_, nullptr)),
        set_(std::move(o.set_)),
        manifest_(std::move(o.manifest_)),
        had_previous_(o.had_previous_),
        previous_(o.previous_),
        previous_generation_(o.previous_generation_),
        claimed_(o.claimed_),
        committed_(o.committed_) {}
  Writer& operator=(Writer&&) = delete;
  ~Writer() {
    if (client_ == nullptr || committed_ || !claimed_) return;
    // Only what this writer made: its own ids, and the intent if still its.
    for (const ChunkRef& c : manifest_.chunks) (void)client_->Delete(c.id);
    (void)client_->Delete(ManifestId(set_, generation(), manifest_.nonce));
    auto intent = client_->Get(IntentId(set_, generation()), 0);
    if (intent.ok() && intent->size() == sizeof(uint64_t) &&
        std::memcmp(intent->data(), &manifest_.nonce, sizeof(uint64_t)) == 0) {
      (void)intent->Release();
      (void)client_->Delete(IntentId(set_, generation()));
    }
  }

  uint64_t generation() const { return manifest_.generation; }
  uint64_t nonce() const { return manifest_.nonce; }

  // Stores the next chunk (a copy of `data`).
  Status AddChunk(std::span<const uint8_t> data) {
    const ObjectId id = ChunkId(set_, generation(), manifest_.nonce, manifest_.chunks.size());
    if (Status s = client_->Put(id, data); !s.ok()) return s;
    manifest_.chunks.push_back({id, data.size(), Checksum(data.data(), data.size())});
    return Status();
  }

  // Seals the manifest, publishes it, deletes the previous generation.
  // CONFLICT (and nothing published) if someone else published meanwhile.
  Status Commit(std::string_view metadata = {}) {
    manifest_.metadata = std::string(metadata);
    const std::vector<uint8_t> bytes = manifest_.Encode();
    const ObjectId mid = ManifestId(set_, generation(), manifest_.nonce);
    if (Status s = client_->Put(mid, bytes); !s.ok()) return s;
    Status s = had_previous_ ? client_->SwapName(set_, previous_, mid)
                             : client_->BindNameIfUnbound(set_, mid);
    if (!s.ok()) return s;  // the destructor deletes this generation
    committed_ = true;
    if (had_previous_) return detail::DeleteGeneration(*client_, set_, previous_generation_);
    return Status();
  }

 private:
  Writer(Client& c, std::string set) : client_(&c), set_(std::move(set)) {}
  Client* client_;
  std::string set_;
  Manifest manifest_;
  bool had_previous_ = false;
  ObjectId previous_;
  uint64_t previous_generation_ = 0;
  bool claimed_ = false;
  bool committed_ = false;
};

// A restored checkpoint: the chunks by pointer into the region (held until
// it is destroyed), checksums verified.
struct Restored {
  uint64_t generation = 0;
  std::string metadata;
  std::vector<Buffer> chunks;
};

// Restores the newest published checkpoint of `set`. OBJECT_NOT_FOUND if
// none was published; BAD_REGION if a checksum does not match.
inline Result<Restored> Restore(Client& c, std::string_view set, bool verify = true) {
  // A newer publish may delete what we looked up before we hold it: look
  // again (each retry means someone published meanwhile).
  Status last;
  for (int attempt = 0; attempt < 16; ++attempt) {
    auto b = c.LookupName(std::string(set));
    if (!b.ok()) return b.status();
    auto mbuf = c.Get(ObjectId(b->id), 0);
    if (!mbuf.ok()) {
      last = mbuf.status();
      continue;
    }
    auto m = Manifest::Decode(mbuf->bytes());
    if (!m.ok()) return m.status();
    Restored r;
    r.generation = m->generation;
    r.metadata = m->metadata;
    bool complete = true;
    for (const ChunkRef& ref : m->chunks) {
      auto chunk = c.Get(ref.id, 0);
      if (!chunk.ok()) {
        last = chunk.status();
        complete = false;
        break;
      }
      if (chunk->size() != ref.size ||
          (verify && Checksum(chunk->data(), chunk->size()) != ref.checksum)) {
        return Status(GISMO_ERR_BAD_REGION, "checkpoint '" + std::string(set) + "' generation " +
                                                std::to_string(r.generation) + ": chunk " +
                                                ref.id.Hex() + " does not match its checksum");
      }
      r.chunks.push_back(std::move(*chunk));
    }
    if (complete) return r;
  }
  return Status(GISMO_ERR_BUSY, "checkpoint '" + std::string(set) +
                                    "' kept changing while being restored: " + last.ToString());
}

}  // namespace gismo::checkpoint

#endif  // GISMO_CHECKPOINT_HPP_
