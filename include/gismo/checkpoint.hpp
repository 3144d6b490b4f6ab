// gismo checkpoint sets: a state saved as objects and published by name, so
// that a standby on another host restores it by pointer.
//
// A set is a name S of the region's name table. A writer of generation g
// (the published generation + 1) first claims it: it puts a small claim
// object holding a random nonce at ClaimId(S, g, k), for the first k whose
// put succeeds. Several writers may claim one generation (an active node
// that froze and the standby that took over from it); the name decides
// which one publishes. A writer's chunks and manifest have ids derived from
// (S, g, nonce) (ChunkId, ManifestId), so no two writers' objects collide:
//   1. each chunk is created, written and sealed;
//   2. the manifest (generation, nonce, chunk ids, sizes and XXH64
//      checksums, the caller's metadata, and an XXH64 of all that) is
//      sealed last;
//   3. the manifest is published by a compare-and-swap of S from the
//      manifest of g - 1 to this one (or "only if unbound" for the first):
//      readers see g - 1 or g whole, never a part, and of the writers of g
//      exactly one wins; the others get GISMO_ERR_CONFLICT;
//   4. then the winner deletes what the losers of g wrote, and all of
//      generation g - 1 (a reader that holds it keeps it until it lets go:
//      deletes are deferred).
// The invariant that makes a frozen writer harmless: nothing a writer of g
// wrote is deleted by another writer before S has moved past g - 1, for
// until then that writer may still win step 3 and publish it. Once S names
// g, no writer of g other than the winner can publish (its swap expects
// g - 1), and no writer of g - 1 at all. (A writer that deleted a frozen
// writer's chunks when it began, as this protocol's first version did, let
// that writer, thawed, publish a manifest whose chunks were gone.)
//
// Who cleans up after a writer that died:
//  - a loser of g, or a writer that died before step 3: its unsealed chunk
//    is aborted by the manager's recovery (once it is fenced); its sealed
//    chunks and manifest are found through its claim's nonce and deleted in
//    step 4 of g, or by the next Begin once g is published;
//  - a winner that died between 3 and 4: the next Begin does step 4;
//  - a writer whose swap's outcome stays unknown (in a non-coherent region
//    a swap is a request to the owner, which may answer too late): it
//    deletes nothing; published or not, its objects are then a winner's
//    or a loser's of g.
// A scan for the claims of a generation looks at every k below kMaxClaims
// (a contains each, no reference taken), so claims may be deleted in any
// order: each with its writer's objects, or by its writer when it aborts.
// So nothing unpublished is ever visible, and nothing is leaked past the
// next checkpoint, except: a writer still writing after the winner deleted
// its objects (it loses step 3) deletes what it wrote after that itself; if
// it dies instead, that stays.
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

#include <algorithm>
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
// Claim k of generation `generation`: 8 bytes, its writer's nonce. (Claim 0
// has the id the single claim of this protocol's first version had.)
inline ObjectId ClaimId(std::string_view set, uint64_t generation, uint64_t k) {
  std::string name = std::string(set) + "#" + std::to_string(generation) + "/intent";
  if (k > 0) name += "/" + std::to_string(k);
  return ObjectId::FromName(name);
}
// A generation may have at most this many claims at once (writers that
// began it and did not publish, nor abort, nor were cleaned up after).
inline constexpr uint64_t kMaxClaims = 256;
// Generations run from 1; a manifest (or a manifest's header) naming 0 or
// one above this is corrupt, so the next generation never overflows.
inline constexpr uint64_t kMaxGeneration = uint64_t{1} << 62;
inline bool GenerationInRange(uint64_t g) { return g != 0 && g <= kMaxGeneration; }
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

  // The u64 little-endian at byte `at` of `b`. REQUIRES: at + 8 <= b.size().
  static uint64_t LoadU64(std::span<const uint8_t> b, size_t at) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{b[at + i]} << (8 * i);
    return v;
  }

  // Every count and size is checked against the bytes there are.
  static Result<Manifest> Decode(std::span<const uint8_t> b) {
    auto bad = [](const std::string& why) {
      return Status(GISMO_ERR_BAD_REGION, "checkpoint manifest is corrupt: " + why);
    };
    auto get = [&b](size_t at) { return LoadU64(b, at); };
    if (b.size() < 48 || b.size() % 8 != 0) return bad("its size is " + std::to_string(b.size()));
    if (get(0) != kManifestMagic) return bad("wrong magic number");
    if (get(b.size() - 8) != Checksum(b.data(), b.size() - 8)) return bad("checksum mismatch");
    Manifest m;
    m.generation = get(8);
    m.nonce = get(16);
    if (!GenerationInRange(m.generation)) {
      return bad("its generation " + std::to_string(m.generation) + " is out of range");
    }
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
inline bool Absent(const Status& s) {
  return s.code() == GISMO_ERR_OBJECT_NOT_FOUND || s.code() == GISMO_ERR_TIMEOUT;
}

// A claim of a generation: its index k and its writer's nonce (known false
// if the object is not 8 bytes: written by something else than a writer).
struct Claim {
  uint64_t index = 0;
  bool known = false;
  uint64_t nonce = 0;
};

// The claims of `generation` of `set`. (A claim still being put reads as
// missing; its writer lives, and deletes its own objects if it loses.)
inline Result<std::vector<Claim>> Claims(Client& c, std::string_view set, uint64_t generation) {
  std::vector<Claim> claims;
  for (uint64_t k = 0; k < kMaxClaims; ++k) {
    const ObjectId id = ClaimId(set, generation, k);
    auto there = c.Contains(id);
    if (!there.ok()) return there.status();
    if (!*there) continue;
    auto b = c.Get(id, 0);
    if (!b.ok()) {
      if (Absent(b.status())) continue;  // deleted since
      return b.status();
    }
    Claim claim{k, b->size() == sizeof claim.nonce, 0};
    if (claim.known) std::memcpy(&claim.nonce, b->data(), sizeof claim.nonce);
    claims.push_back(claim);
  }
  return claims;
}

// Deletes what the writer of `generation` with `nonce` wrote: its chunks,
// the highest first, then its manifest. Invariant: the chunks of a writer
// that exist are a prefix 0..j, for a writer makes them in order, every
// delete of them goes from the highest down (so one cut short leaves a
// prefix), and recovery aborts a dead writer's unsealed chunk. The count
// deleted is the larger of that prefix's and the chunk count of the
// writer's manifest, if it decodes (which also finds the chunks after a gap
// that a forward delete of an older version left). Only the ids of (set,
// generation, nonce, i) are deleted, never ids a manifest lists.
// OBJECT_NOT_SEALED, and nothing deleted, if a chunk is still being written
// (its writer is alive, or suspected and not yet fenced: a later cleanup
// tries again).
inline Status DeleteWritten(Client& c, std::string_view set, uint64_t generation, uint64_t nonce) {
  uint64_t n = 0;
  for (; n < kMaxChunks; ++n) {
    const ObjectId id = ChunkId(set, generation, nonce, n);
    auto info = c.Stat(id);
    if (!info.ok()) {
      if (info.status().code() == GISMO_ERR_OBJECT_NOT_FOUND) break;
      return info.status();
    }
    if (info->state == GISMO_STATE_UNSEALED) {
      return Status(GISMO_ERR_OBJECT_NOT_SEALED,
                    "checkpoint chunk " + id.Hex() + " is still being written");
    }
    if (info->state != GISMO_STATE_SEALED) break;  // deleted, still held
  }
  const ObjectId mid = ManifestId(set, generation, nonce);
  if (auto m = c.Get(mid, 0); m.ok()) {
    auto decoded = Manifest::Decode(m->bytes());
    if (decoded.ok() && decoded->generation == generation && decoded->nonce == nonce) {
      n = std::max<uint64_t>(n, decoded->chunks.size());
    }
  } else if (!Absent(m.status())) {
    return m.status();
  }
  for (uint64_t i = n; i > 0; --i) {
    Status s = c.Delete(ChunkId(set, generation, nonce, i - 1));
    if (!s.ok() && s.code() != GISMO_ERR_OBJECT_NOT_FOUND) return s;
  }
  Status s = c.Delete(mid);
  return s.ok() || s.code() == GISMO_ERR_OBJECT_NOT_FOUND ? Status() : s;
}

// Deletes the claims of `generation`, each after what its writer wrote,
// but for the writer with nonce `keep` (if `keeping`). A claim whose
// objects cannot go yet stays, found again by a later cleanup. Goes on past
// it; returns the first such error. REQUIRES: S names `generation` or a
// later one, so that no writer whose objects it deletes can publish.
inline Status DeleteClaims(Client& c, std::string_view set, uint64_t generation, bool keeping,
                           uint64_t keep) {
  auto claims = Claims(c, set, generation);
  if (!claims.ok()) return claims.status();
  Status first;
  for (const Claim& claim : *claims) {
    if (keeping && claim.known && claim.nonce == keep) continue;
    Status s = claim.known ? DeleteWritten(c, set, generation, claim.nonce) : Status();
    if (s.ok()) s = c.Delete(ClaimId(set, generation, claim.index));
    if (!s.ok() && s.code() != GISMO_ERR_OBJECT_NOT_FOUND && first.ok()) first = s;
  }
  return first;
}
// Step 4's first half: what the losers of `generation` wrote.
inline Status DeleteLosers(Client& c, std::string_view set, uint64_t generation, uint64_t winner) {
  return DeleteClaims(c, set, generation, /*keeping=*/true, winner);
}
// All of `generation`.
inline Status DeleteGeneration(Client& c, std::string_view set, uint64_t generation) {
  return DeleteClaims(c, set, generation, /*keeping=*/false, 0);
}

// What `set` names: found false (generation 0) if the name is not bound.
struct PublishedManifest {
  bool found = false;
  ObjectId id;
  uint64_t generation = 0;
  uint64_t nonce = 0;
};
// A set whose name is bound to a manifest that is gone: not a race (a
// publish binds the name to its own manifest before it deletes the one
// before), so it stays so until Drop.
inline Status ManifestGone(std::string_view set, const ObjectId& mid) {
  return Status(GISMO_ERR_BAD_REGION, "checkpoint set '" + std::string(set) +
                                          "' is bound to manifest " + mid.Hex() +
                                          ", which is gone (deleted outside the checkpoint "
                                          "protocol?): Drop removes the set");
}
// How many times a reader looks the name up again when the manifest it
// names went meanwhile (each time, a newer publish deleted it).
inline constexpr int kLookupAttempts = 16;

inline Result<PublishedManifest> Published(Client& c, std::string_view set) {
  PublishedManifest p;
  Status last;
  for (int attempt = 0; attempt < kLookupAttempts; ++attempt) {
    auto b = c.LookupName(std::string(set));
    if (!b.ok()) {
      if (b.status().code() == GISMO_ERR_OBJECT_NOT_FOUND) return PublishedManifest{};
      return b.status();
    }
    const ObjectId looked_up(b->id);
    if (attempt > 0 && looked_up == p.id) return ManifestGone(set, p.id);
    p.found = true;
    p.id = looked_up;
    auto m = c.Get(p.id, 0);
    if (!m.ok()) {
      if (!Absent(m.status())) return m.status();
      last = m.status();
      continue;  // a newer publish deleted it: look again
    }
    auto decoded = Manifest::Decode(m->bytes());
    if (!decoded.ok()) return decoded.status();
    p.generation = decoded->generation;
    p.nonce = decoded->nonce;
    return p;
  }
  return Status(GISMO_ERR_BUSY, "checkpoint '" + std::string(set) +
                                    "' kept changing while it was looked up: " + last.ToString());
}

// The generation of `mid`, the manifest `set` is bound to: decoded, or, if
// it does not decode, the one in its header when that header's generation
// and nonce give `mid` (they are then its writer's). known false if it is
// gone or tells nothing; other errors are returned.
struct BoundGeneration {
  bool known = false;
  uint64_t generation = 0;
};
inline Result<BoundGeneration> GenerationOf(Client& c, std::string_view set, const ObjectId& mid) {
  auto m = c.Get(mid, 0);
  if (!m.ok()) {
    if (Absent(m.status())) return BoundGeneration{};
    return m.status();
  }
  if (auto decoded = Manifest::Decode(m->bytes()); decoded.ok()) {
    return BoundGeneration{true, decoded->generation};
  }
  if (m->size() < 24) return BoundGeneration{};
  const uint64_t generation = Manifest::LoadU64(m->bytes(), 8);  // as Decode reads them
  const uint64_t nonce = Manifest::LoadU64(m->bytes(), 16);
  if (GenerationInRange(generation) && ManifestId(set, generation, nonce) == mid) {
    return BoundGeneration{true, generation};
  }
  return BoundGeneration{};
}

// Whether a failed compare-and-swap of a name may still be applied: in a
// non-coherent region the owner did not answer in time (the same request
// asked again as the client's next call waits for its outcome), or the
// answer was lost.
inline bool OutcomeUnknown(const Status& s) {
  switch (s.code()) {
    case GISMO_ERR_TIMEOUT:
    case GISMO_ERR_CONNECTION:
    case GISMO_ERR_IO:
    case GISMO_ERR_PROTOCOL:
    case GISMO_ERR_INTERNAL:
      return true;
    default:
      return false;
  }
}
// How many times a publish asks its swap while the outcome is unknown.
inline constexpr int kSwapAttempts = 3;

enum class Publish { kPublished, kNotPublished, kUnknown };
// Publishes manifest `mid` as `set` by `swap` (the name's compare-and-swap,
// returning its Status), asked again at once while its outcome is unknown.
// kPublished if a swap succeeded or `set` names `mid` after the last one;
// kNotPublished if the last swap was refused for sure (CONFLICT: another
// writer published; or BUSY, LIMIT...: not applied); kUnknown otherwise.
// *failed: the last swap's error.
template <typename Swap>
Publish PublishManifest(Client& c, std::string_view set, const ObjectId& mid, Swap&& swap,
                        Status* failed) {
  Status s = swap();
  bool unknown = false;
  for (int attempt = 1; attempt < kSwapAttempts && OutcomeUnknown(s); ++attempt) {
    unknown = true;
    s = swap();
  }
  if (s.ok()) return Publish::kPublished;
  *failed = s;
  auto bound = c.LookupName(std::string(set));
  if (bound.ok() && ObjectId(bound->id) == mid) return Publish::kPublished;
  const bool looked = bound.ok() || bound.status().code() == GISMO_ERR_OBJECT_NOT_FOUND;
  return OutcomeUnknown(s) || (unknown && !looked) ? Publish::kUnknown : Publish::kNotPublished;
}

inline uint64_t RandomNonce() {
  std::random_device rd;
  return uint64_t{rd()} << 32 | rd();
}
}  // namespace detail

// Writes one checkpoint of a set. Begin, AddChunk..., Commit. Destroyed
// without Commit, it deletes what it wrote (a writer that dies instead
// leaves that to the cleanup after the next publish).
class Writer {
 public:
  static Result<Writer> Begin(Client& c, std::string set) {
    Writer w(c, std::move(set));
    auto published = detail::Published(c, w.set_);
    if (!published.ok()) return published.status();
    w.had_previous_ = published->found;
    w.previous_ = published->id;
    w.previous_generation_ = published->generation;
    if (published->generation >= kMaxGeneration) {
      return Status(GISMO_ERR_LIMIT, "checkpoint set '" + w.set_ +
                                         "' is at its last generation (2^62): start a new set");
    }
    w.manifest_.generation = published->generation + 1;
    w.manifest_.nonce = detail::RandomNonce();
    // Step 4 of the published generation, in case its winner died before
    // it. Best effort: what cannot go yet (a loser's chunk still being
    // written) goes at a later Begin or Commit; a real failure shows at the
    // claim below.
    if (published->found) {
      (void)detail::DeleteLosers(c, w.set_, published->generation, published->nonce);
      if (published->generation > 1) {
        (void)detail::DeleteGeneration(c, w.set_, published->generation - 1);
      }
    }
    const uint64_t nonce = w.manifest_.nonce;
    const std::string_view bytes(reinterpret_cast<const char*>(&nonce), sizeof nonce);
    for (uint64_t k = 0; k < kMaxClaims; ++k) {
      Status s = c.Put(ClaimId(w.set_, w.generation(), k), bytes);
      if (s.code() == GISMO_ERR_OBJECT_EXISTS) continue;  // another writer's
      if (!s.ok()) return s;
      w.claim_ = k;
      w.claimed_ = true;
      return w;
    }
    return Status(GISMO_ERR_BUSY, "generation " + std::to_string(w.generation()) +
                                      " of checkpoint '" + w.set_ + "' has " +
                                      std::to_string(kMaxClaims) +
                                      " claims and none was published: its writers died or "
                                      "are still writing (once none runs, Drop removes the set)");
  }

  Writer(Writer&& o) noexcept
      : client_(std::exchange(o.client_, nullptr)),
        set_(std::move(o.set_)),
        manifest_(std::move(o.manifest_)),
        had_previous_(o.had_previous_),
        previous_(o.previous_),
        previous_generation_(o.previous_generation_),
        claim_(o.claim_),
        claimed_(o.claimed_),
        committed_(o.committed_),
        kept_(o.kept_),
        put_bytes_(std::move(o.put_bytes_)) {}
  Writer& operator=(Writer&&) = delete;
  ~Writer() {
    if (client_ == nullptr || committed_ || !claimed_ || kept_) return;
    // Only what this writer made: its own ids, the highest chunk first, then
    // its claim if it is still its (a winner may have deleted it, and a
    // stale writer taken its k). A delete that fails keeps the rest, and the
    // claim: the cleanup after the next publish finds them through it.
    auto gone = [](const Status& s) { return s.ok() || s.code() == GISMO_ERR_OBJECT_NOT_FOUND; };
    for (auto c = manifest_.chunks.rbegin(); c != manifest_.chunks.rend(); ++c) {
      if (!gone(client_->Delete(c->id))) return;
    }
    if (!gone(client_->Delete(ManifestId(set_, generation(), manifest_.nonce)))) return;
    const ObjectId claim = ClaimId(set_, generation(), claim_);
    auto held = client_->Get(claim, 0);
    if (held.ok() && held->size() == sizeof(uint64_t) &&
        std::memcmp(held->data(), &manifest_.nonce, sizeof(uint64_t)) == 0) {
      (void)held->Release();
      (void)client_->Delete(claim);
    }
  }

  uint64_t generation() const { return manifest_.generation; }
  uint64_t nonce() const { return manifest_.nonce; }

  // Stores the next chunk (a copy of `data`). INVALID_ARGUMENT once the
  // writer committed (or its commit's outcome is unknown), or was moved from;
  // LIMIT past kMaxChunks chunks.
  Status AddChunk(std::span<const uint8_t> data) {
    if (Status s = CheckOpen("add a chunk"); !s.ok()) return s;
    // A manifest of more chunks is one no reader accepts (Decode): it must
    // never be published (its publish would delete the previous generation).
    if (manifest_.chunks.size() >= kMaxChunks) {
      return Status(GISMO_ERR_LIMIT, "checkpoint '" + set_ + "' has " +
                                         std::to_string(manifest_.chunks.size()) +
                                         " chunks, the most a manifest holds");
    }
    const ObjectId id = ChunkId(set_, generation(), manifest_.nonce, manifest_.chunks.size());
    if (Status s = client_->Put(id, data); !s.ok()) return s;
    manifest_.chunks.push_back({id, data.size(), Checksum(data.data(), data.size())});
    return Status();
  }

  // Seals the manifest and publishes it; then deletes what the other
  // writers of this generation wrote and the previous generation. CONFLICT
  // (and nothing published) if another writer published meanwhile. Once
  // published it returns OK: a cleanup that cannot finish yet is finished
  // by a later Begin or Commit. If whether it was published stays unknown
  // (a swap that timed out, asked again in vain), the error says so and the
  // destructor deletes nothing: if it was not published, the cleanup after
  // the next publish deletes its objects through its claim.
  // INVALID_ARGUMENT, as AddChunk, once it committed or was moved from.
  Status Commit(std::string_view metadata = {}) {
    if (Status s = CheckOpen("commit"); !s.ok()) return s;
    return CommitWith(metadata, [this](const ObjectId& mid) {
      return had_previous_ ? client_->SwapName(set_, previous_, mid)
                           : client_->BindNameIfUnbound(set_, mid);
    });
  }

 private:
  friend class WriterTestPeer;  // tests: CommitWith a swap that fails
  Writer(Client& c, std::string set) : client_(&c), set_(std::move(set)) {}

  Status CheckOpen(const char* doing) const {
    const char* why = client_ == nullptr || !claimed_ ? "it was moved from"
                      : committed_                    ? "it committed"
                      : kept_                         ? "its commit's outcome is unknown"
                                                      : nullptr;
    if (why == nullptr) return Status();
    return Status(GISMO_ERR_INVALID_ARGUMENT, "checkpoint '" + set_ + "' generation " +
                                                  std::to_string(generation()) + ": cannot " +
                                                  doing + ", " + why + "; begin a new Writer");
  }

  template <typename Swap>
  Status CommitWith(std::string_view metadata, Swap&& swap) {
    manifest_.metadata = std::string(metadata);
    const std::vector<uint8_t> bytes = manifest_.Encode();
    const ObjectId mid = ManifestId(set_, generation(), manifest_.nonce);
    // A commit tried again after a refused swap (BUSY, LIMIT...) puts its
    // manifest again only if its metadata changed.
    if (!put_bytes_.empty() && put_bytes_ != bytes) {
      if (Status s = client_->Delete(mid); !s.ok() && s.code() != GISMO_ERR_OBJECT_NOT_FOUND) {
        return s;
      }
      put_bytes_.clear();
    }
    if (put_bytes_.empty()) {
      if (Status s = client_->Put(mid, bytes); !s.ok()) return s;
      put_bytes_ = bytes;
    }
    Status failed;
    switch (detail::PublishManifest(
        *client_, set_, mid, [&] { return swap(mid); }, &failed)) {
      case detail::Publish::kPublished:
        break;
      case detail::Publish::kNotPublished:
        // The swap found no manifest: the winner of this generation deleted
        // this loser's (its cleanup) after it published.
        if (failed.code() == GISMO_ERR_OBJECT_NOT_FOUND) {
          auto still = client_->Contains(mid);
          if (still.ok() && !*still) {
            return Status(GISMO_ERR_CONFLICT,
                          "checkpoint '" + set_ + "' generation " + std::to_string(generation()) +
                              ": another writer published it first (and deleted this "
                              "writer's manifest)");
          }
        }
        return failed;  // the destructor deletes this writer's objects
      case detail::Publish::kUnknown:
        kept_ = true;
        return Status(failed.code(),
                      "checkpoint '" + set_ + "' generation " + std::to_string(generation()) +
                          ": whether it was published is unknown (" + failed.ToString() +
                          "); its objects were kept (if it was not published, the cleanup "
                          "after the next publish deletes them)");
    }
    committed_ = true;
    (void)detail::DeleteLosers(*client_, set_, generation(), manifest_.nonce);
    if (had_previous_) (void)detail::DeleteGeneration(*client_, set_, previous_generation_);
    return Status();
  }

  Client* client_;
  std::string set_;
  Manifest manifest_;
  bool had_previous_ = false;
  ObjectId previous_;
  uint64_t previous_generation_ = 0;
  uint64_t claim_ = 0;
  bool claimed_ = false;
  bool committed_ = false;
  bool kept_ = false;               // its publish's outcome is unknown: it deletes nothing
  std::vector<uint8_t> put_bytes_;  // its manifest as stored (empty: not stored; no encoding is)
};

// Removes set `set`: unbinds its name, then deletes the published
// generation and the claimed ones beside it (the one before, if its cleanup
// did not finish, and the next, which nobody published). OK if there is no
// such set. A name bound to a manifest that cannot be read or decoded is
// unbound all the same, and the generation taken from the manifest's header
// if the generation and nonce there give its id. Otherwise (the manifest is
// gone, its header is corrupt too, or it is no manifest of the set) the
// generation is unknown, and so are the ids of the claims, chunks and
// manifests to delete: those stay, and so does the object the name was
// bound to. REQUIRES: no writer of the set runs (what one writes may then
// be deleted, or leaked).
inline Status Drop(Client& c, std::string_view set) {
  uint64_t g = 0;  // the published generation; 0: none
  auto bound = c.LookupName(std::string(set));
  if (!bound.ok() && bound.status().code() != GISMO_ERR_OBJECT_NOT_FOUND) return bound.status();
  if (bound.ok()) {
    const ObjectId mid(bound->id);
    auto published = detail::GenerationOf(c, set, mid);
    if (!published.ok()) return published.status();
    Status s = c.UnbindName(std::string(set), &mid);
    if (!s.ok() && s.code() != GISMO_ERR_OBJECT_NOT_FOUND) return s;
    if (!published->known) return Status();
    g = published->generation;
  }
  Status first;
  for (uint64_t x = g + 1; x > 0 && x + 2 > g; --x) {
    if (Status s = detail::DeleteGeneration(c, set, x); !s.ok() && first.ok()) first = s;
  }
  return first;
}

// A restored checkpoint: the chunks by pointer into the region (held until
// it is destroyed), checksums verified.
struct Restored {
  uint64_t generation = 0;
  std::string metadata;
  std::vector<Buffer> chunks;
};

// Restores the newest published checkpoint of `set`. OBJECT_NOT_FOUND if
// none was published; BAD_REGION if a checksum does not match; LIMIT if it
// has more chunks than this client may hold references (the manager's
// --max-refs-per-client; write fewer, larger chunks).
inline Result<Restored> Restore(Client& c, std::string_view set, bool verify = true) {
  // A newer publish may delete what we looked up before we hold it: look
  // again (each retry means someone published meanwhile).
  Status last;
  ObjectId missing;  // the manifest the last attempt did not find
  for (int attempt = 0; attempt < detail::kLookupAttempts; ++attempt) {
    auto b = c.LookupName(std::string(set));
    if (!b.ok()) return b.status();
    const ObjectId mid(b->id);
    auto mbuf = c.Get(mid, 0);
    if (!mbuf.ok() && mbuf.status().code() == GISMO_ERR_LIMIT) return mbuf.status();
    if (!mbuf.ok()) {
      // Gone twice under the same name: gone for good. Another failure (a
      // lock held by a suspected client: BUSY) is tried again, as before.
      if (detail::Absent(mbuf.status())) {
        if (attempt > 0 && mid == missing) return detail::ManifestGone(set, mid);
        missing = mid;
      }
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
      if (!chunk.ok() && chunk.status().code() == GISMO_ERR_LIMIT) {
        // Not a change under us: this client cannot hold that many.
        return Status(
            GISMO_ERR_LIMIT,
            "checkpoint '" + std::string(set) + "' generation " + std::to_string(r.generation) +
                " has " + std::to_string(m->chunks.size()) +
                " chunks, and a restore holds a reference to each: " + chunk.status().message());
      }
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
