// The name table (layout.h, "Name table"): names bound to object ids, in the
// region, changed only inside a Txn under the table's lock, so a writer that
// dies mid-change is rolled back by recovery like any other operation. Every
// operation runs in the client against shared memory.
//
// Names are byte strings of 1 to kMaxNameLength (192) bytes without a NUL
// byte (so that every C string is one); they need not be UTF-8 (the CLI and
// Python decode them as UTF-8 with replacement, and take UTF-8 in).
//
// A bind requires the object to be sealed at that moment (it takes the
// object's shard lock, then the table's, in the global lock order); a name
// is not a reference: deleting the object leaves the name bound to its id,
// and a lookup returns that id (a get of it then finds nothing).
#ifndef GISMO_STORE_NAMES_H_
#define GISMO_STORE_NAMES_H_

#include <gismo/gismo.h>

#include <cstdint>
#include <functional>
#include <gismo/status.hpp>
#include <string>
#include <string_view>

#include "region/region.h"
#include "store/txn.h"

namespace gismo::store {

// How a bind treats the name's current binding.
enum class BindMode {
  kAlways,     // bind, or rebind whatever it was bound to
  kIfUnbound,  // GISMO_ERR_CONFLICT if the name is bound
  kIfBoundTo,  // GISMO_ERR_CONFLICT unless bound to `expected` (compare-and-swap)
};

struct NameBinding {
  std::string name;
  gismo_id_t id{};
  uint64_t version = 0;  // binds of this name since it was last unbound (1: first)
  uint64_t bind_time_ns = 0;
};

// INVALID_ARGUMENT naming the problem if `name` is not a valid name.
Status CheckName(std::string_view name);
uint64_t HashName(std::string_view name);

// The id whose waiters a change of `name` wakes (gismo_wait_name): a waiter
// registers a wait on it with the manager like a blocking get; a client that
// binds, swaps or unbinds the name tells the manager about it after its
// commit, like a sealer (ClientImpl::NotifyIfWatched). It is never an object
// of its own: "gismo-name" in the first 10 bytes, then 10 bytes of XXH3-128
// of the name. Should a user's object bear the same id, its seals only cause
// spurious wake-ups (a waiter looks the name up again), and a name change
// only spurious wake-ups of its getters.
gismo_id_t NameWatchId(std::string_view name);

// The entry of `name` in the table, if bound. REQUIRES: the table's lock, or
// a stopped world (fsck). Entry indices read from slots are bounds-checked.
struct NameLocated {
  uint32_t hslot = ~0u;  // found: its slot; not found: where it would go (~0u: none)
  uint32_t entry = 0;
  region::NameEntry* e = nullptr;
};
bool FindName(const region::Region& r, uint64_t hash, std::string_view name, NameLocated* out);
// The name held by a live entry (its length clamped to kMaxNameLength).
std::string EntryName(const region::NameEntry& e);

class Names {
 public:
  Names(const region::Region& r, uint32_t slot, uint64_t session)
      : r_(r), slot_(slot), session_(session) {}

  // Binds `name` to the sealed object `id` (see BindMode). `expected` is
  // used with kIfBoundTo only. OBJECT_NOT_FOUND / OBJECT_NOT_SEALED if `id`
  // is not a sealed object; LIMIT if the table is full.
  Status Bind(std::string_view name, const gismo_id_t& id, BindMode mode,
              const gismo_id_t* expected);
  // Unbinds `name`; with `expected`, only if bound to it (else CONFLICT).
  // OBJECT_NOT_FOUND if it is not bound.
  Status Unbind(std::string_view name, const gismo_id_t* expected);
  // OBJECT_NOT_FOUND if `name` is not bound.
  Status Lookup(std::string_view name, NameBinding* out) const;
  // Every binding whose name starts with `prefix`, in table order (one
  // consistent snapshot: read under the table's lock).
  Status List(std::string_view prefix, const std::function<void(const NameBinding&)>& fn) const;
  // The table's version (rises with every change): cheap, no lock.
  uint64_t Version() const { return r_.names().version.load(std::memory_order_acquire); }

  // Bind and Unbind inside `txn`, which the caller commits (the
  // non-coherent owner, with the request's head). *version (if set): the
  // name's version after the bind. In a non-coherent region the table's
  // version is its seqlock: odd while this change's lines are written,
  // even once they are in memory.
  Status BindIn(Txn& txn, std::string_view name, const gismo_id_t& id, BindMode mode,
                const gismo_id_t* expected, uint64_t* version) const;
  Status UnbindIn(Txn& txn, std::string_view name, const gismo_id_t* expected) const;

 private:
  void OpenTable(Txn& txn) const;
  // `entry` (if set) and slots [first_slot, first_slot + slots) changed.
  void CloseTable(Txn& txn, const region::NameEntry* entry, uint32_t first_slot,
                  uint32_t slots) const;

  const region::Region& r_;
  uint32_t slot_;
  uint64_t session_;
};

}  // namespace gismo::store

#endif  // GISMO_STORE_NAMES_H_
