// The owner's side of a non-coherent region (doc/noncoherent.md, sections
// 3-5): the one writer of the shared metadata (index, records, allocator)
// applies the requests its clients publish on their slots' rings, and frees
// deleted objects once no client's table holds them.
//
// Each request is applied in one Txn of slot 0 (the owner's): its locks,
// undo log and persist barriers, which in a non-coherent region are cache
// line flushes (Region::Persist, PersistMode::kFlush), so an owner that dies
// at any instruction leaves memory that its successor's undo restores. The
// ring's head is written in the same Txn (RequestConsumer::head_word): a
// request's effects and its consumption commit together, and a successor
// takes again exactly what was not committed. A request that fails changes
// nothing, so its head is committed alone. Its answer is staged on the
// response ring before the head commits and published after (StageAnswer),
// so a successor publishes the answer to a committed request; a request is
// taken only while the ring has room for its answer (a client that does
// not read its answers only delays itself).
//
// Records are written under their seqlock (ObjectRecord::ref_count is the
// version: odd, the words, even; Txn::WriteVersion, so an undo only moves it
// forward). A shard's hash slots change under the shard's index_version,
// made odd and flushed before the first slot is written, and made even only
// after the changed slots are flushed (NcReader::Find trusts an empty probe
// only across an even, unchanged version).
//
// Deletes follow O1-O3 of region/nc_references.h: the record is marked
// deleting (flushed at the Txn's commit), then, before the answer, the
// owner reads every live client's summary line and the table of each client
// whose summary marks the record's bucket (at most kTablesPerDelete): held
// by none, it is freed before the delete returns, as in a coherent region.
// Held (or more tables marked than that), it waits in NcOwnerShared::pending for the
// holder's last release (a kReleased request), the next Sweep (one scan
// for all of them, of the tables whose summaries mark a waiting record), or
// the holder's recovery. A fenced client's table is the owner's to clear
// (Recover).
//
// Owned objects (GISMO_CREATE_OWNED) are records naming their creator's
// slot with the owned flag; a client may own as many as a coherent
// client's table admits (held_capacity - held_capacity / 4), so a program
// meets the same limit in both modes.
//
// Several owner threads (doc/noncoherent.md 9.3): one NcOwnerStore per
// thread, each applying in a Txn slot of its own (slot 0 for thread 0, a
// helper slot listed in the superblock's OwnerHelpersLine for the others)
// the requests of the client slots given to it (region::OwnerThreadOf), all
// sharing one NcOwnerShared: the deletes waiting for a sweep and CLOCK's
// hand. The region's locks serialize their Txns as they serialize coherent
// clients'; the threads are one host, so each line still has one writing
// host. Each public call holds the store's own mutex (a thread's serving
// pass, or the manager's Admit and Recover of one of its slots); the shared
// state's mutex comes after it and is never taken while a Txn holds region
// locks.
#ifndef GISMO_STORE_NC_OWNER_H_
#define GISMO_STORE_NC_OWNER_H_

#include <cstdint>
#include <gismo/status.hpp>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "region/cache_lines.h"
#include "region/nc_references.h"
#include "region/nc_requests.h"
#include "region/region.h"
#include "region/request_ring.h"
#include "store/allocator.h"
#include "store/index.h"
#include "store/names.h"
#include "store/txn.h"

namespace gismo::store {

struct NcOwnerStats {
  uint64_t applied = 0;        // requests applied (answered), failed ones included
  uint64_t freed = 0;          // objects freed (deletes, aborts, recoveries)
  uint64_t sweeps = 0;         // table scans
  uint64_t evicted = 0;        // objects evicted
  uint64_t noted_gets = 0;     // reference bits set from clients' recent-gets notes
  uint64_t answers_found = 0;  // answers a previous owner committed and did not send
};

// What the owner threads of one manager share. `mu` guards the fields and
// serializes Sweep, Evict and TakeNotedGets and the frees of waiting
// deletes (a record is taken out of `pending` by the one thread that frees
// it). Recursive: Evict takes the notes under it.
struct NcOwnerShared {
  // The helper threads' Txn slots: no client's (their log areas hold undo
  // logs, not rings; their lock records, not summaries). Set before any
  // store serves; read without the mutex.
  std::vector<uint32_t> helper_slots;
  std::recursive_mutex mu;
  std::set<uint32_t> pending;  // records deleting, held by some table
  uint64_t last_sweep_ns = 0;
  uint64_t last_notes_ns = 0;
  // CLOCK's ring (Evict's, under `mu`): records listed as holding an
  // evictable object, so a sweep passes those, not every record. A record
  // is listed by the first Evict's scan of the index or, once its create
  // is reported, by the next Evict; the hand drops one it finds free or
  // holding an object that is not evictable (and `listed` says which are).
  std::vector<uint32_t> evictable;
  std::vector<bool> listed;
  bool evictable_scanned = false;
  uint64_t evict_hand = 0;  // CLOCK's hand over `evictable`
  // The records creates of evictable objects took since the last Evict. A
  // leaf lock, held for the append only: a create holds a shard lock then,
  // and an Evict takes shard locks under `mu`. More than the region has
  // records (no Evict for long): dropped, and the next Evict scans again.
  std::mutex created_mu;
  std::vector<uint32_t> created_evictable;
  bool created_dropped = false;
};

class NcOwnerStore {
 public:
  // The only owner thread: Txn slot 0, `session` its session.
  NcOwnerStore(const region::Region& r, uint64_t session);
  // One of several: its Txns in slot `txn_slot` (active in `session`),
  // sharing `shared` (which outlives it) with the others.
  NcOwnerStore(const region::Region& r, uint32_t txn_slot, uint64_t session, NcOwnerShared* shared);

  // Starts serving client `slot` in session `session` (its rings' seal),
  // from where the rings' indices are in memory. Nothing changes for a slot
  // already served in that session (a client that re-attaches). An answer a
  // previous owner staged for a request whose head it committed (it died
  // before it published it) is published: the client waits for it.
  // REQUIRES: the previous owner's Txns undone (UndoDeadClient), so that
  // the request ring's head in memory is the committed one.
  void Admit(uint32_t slot, uint64_t session);
  bool Admitted(uint32_t slot) const { return clients_.count(slot) != 0; }

  // Applies up to `max` requests `slot` has published and answers each,
  // taking one only while the response ring has room for its answer.
  // Returns how many were taken. An error: the client broke the protocol
  // (a corrupt ring or a request no encoder writes); nothing of it was
  // applied, the slot is no longer served, and the caller ends its session.
  Result<uint32_t> Serve(uint32_t slot, uint32_t max);
  // Serve for every admitted slot, up to `max_each` requests of each; the
  // slots whose clients broke the protocol, with why, in *broken. How many
  // requests were taken.
  uint32_t ServeAll(uint32_t max_each, std::vector<std::pair<uint32_t, Status>>* broken);
  // The objects sealed, aborted or deleted and the names changed
  // (NameWatchId) since the last call: their waiters are the caller's to
  // wake.
  std::vector<gismo_id_t> TakeChanged();
  // Whether an admitted slot has a request published beyond those taken
  // (each ring's tail invalidated and read): the last look before a sleep.
  bool AnyPending();
  // Frees the deleted objects no client's table holds any more; how many.
  // One read of every live client's summary, and of the tables they mark
  // (O2), serves them all.
  uint32_t Sweep();
  // Sweep, if 256 deletes wait or 2 ms passed since the last (`now_ns` on
  // any monotonic clock), and TakeNotedGets every 10 ms: what a busy owner
  // calls between batches.
  uint32_t SweepIfDue(uint64_t now_ns);
  bool HasPendingFrees() const;
  // A fenced or departed client's slot, once it can never write again: its
  // table cleared (its references dropped), its unsealed objects freed, its
  // owned objects deleted, its slabs given back, its rings emptied for the
  // slot's next session. Idempotent: a failed one is called again (the
  // manager retries). REQUIRES: the client is fenced
  // (doc/failure.md), its lines on its host written back or dropped (7.3).
  Status Recover(uint32_t slot);
  // Evicts sealed, evictable objects no client holds (CLOCK, as evict.cc,
  // with the free rule of nc_references.h) until `want_bytes` of blocks are
  // evicted or two turns of the hand found nothing more; the block bytes
  // evicted (an object a reader took meanwhile is freed at its release).
  uint64_t Evict(uint64_t want_bytes);
  // CLOCK's reference bits of the gets live clients noted in their
  // recent-gets lines (layout.h, kNcRecentGets): each noted record still at
  // the noted version, sealed, evictable and with its bit clear gets it, in
  // a Txn of its own. Evict calls it before its hand moves, SweepIfDue
  // every 10 ms (so a busy client's notes are taken before newer ones
  // overwrite them). How many bits it set.
  uint32_t TakeNotedGets();
  // What a create that does not fit evicts at least: evict_percent of the
  // heap.
  uint64_t EvictShare() const;
  // What a successor owner finds: records left deleting by the previous
  // owner (freed by the next Sweep). Call once, before serving.
  void AdoptDeleting();

  NcOwnerStats stats() const;
  uint32_t txn_slot() const { return txn_slot_; }

 private:
  // CLOCK's ring, brought up to date: the creates reported since the last
  // call listed (the first call, or one after created_evictable was dropped,
  // scans the index). REQUIRES: shared_->mu.
  std::vector<uint32_t>& ListEvictable();
  struct Client {
    Client(region::HwLines& lines, const region::Region& r, uint32_t slot, uint64_t session);
    uint64_t session;
    region::RequestConsumer<region::HwLines> requests;
    region::RequestProducer<region::HwLines> responses;
    // The request being applied: the ring seq of its head entry, its op.
    uint64_t serving_seq = 0;
    region::NcOp serving_op = region::NcOp::kGoodbye;
  };

  // Writes `a` as the answer to the request being served (its seq and op
  // added), staged on the response ring: in memory, not published. Each
  // request's answer is staged before its head commits and published after
  // (Serve), so a request whose head is committed has its answer in memory
  // whatever instant the owner dies at (Admit publishes it). Staging again
  // replaces it.
  void StageAnswer(Client& c, region::NcResponse a);
  // One request taken off `c`'s ring, applied, its answer staged, its head
  // committed: in one Txn with its effects (retried after a sweep or an
  // eviction when a create does not fit), or alone if it failed; an evict
  // in Txns of its own.
  void ApplyRequest(Client& c, uint32_t slot, const region::NcRequest& q);
  void EvictRequest(Client& c, const region::NcRequest& q);
  // A client dropped its last reference on q.record, which it saw deleting:
  // freed now if no table holds it. Answered OK whatever it finds.
  void ReleasedRequest(Client& c, const region::NcRequest& q);
  region::NcResponse Apply(uint32_t slot, const region::NcRequest& q, Txn& txn);
  region::NcResponse Create(uint32_t slot, const region::NcRequest& q, Txn& txn);
  region::NcResponse Seal(uint32_t slot, const region::NcRequest& q, Txn& txn);
  region::NcResponse Abort(uint32_t slot, const region::NcRequest& q, Txn& txn);
  region::NcResponse Delete(uint32_t slot, const region::NcRequest& q, Txn& txn, uint32_t* deleted);
  // The seal's or delete's event (event_ring.h), appended in its Txn and
  // published after the commit (PublishCommittedEvent).
  void AppendEventOf(Txn& txn, uint32_t slot, region::EventKind kind, const Located& loc);
  void PublishCommittedEvent();
  // Bind, swap (compare-and-swap) or unbind a name (names.h).
  region::NcResponse Name(const region::NcRequest& q, Txn& txn);
  // Sets an evictable object's reference bit (CLOCK's second chance).
  region::NcResponse Touch(const region::NcRequest& q, Txn& txn);
  // The record's info word, under its seqlock. REQUIRES: its shard lock.
  void SetInfo(Txn& txn, region::ObjectRecord& rec, uint64_t info);
  // Locks the shard of record `global` and checks that it holds `id`.
  Status LockRecord(Txn& txn, uint64_t global, const region::IdWords& id, Located* loc);
  // LockRecord for q.record, then: an unsealed object that `slot` creates
  // (GISMO_OK), or why not (sealed, deleted, another's).
  gismo_status_t LockUnsealed(Txn& txn, uint32_t slot, const region::NcRequest& q, Located* loc);
  // The record's words under its seqlock, logged as one batch
  // (Txn::WriteAll): its version odd, `words` in order, its version even;
  // then `after`, words of other lines the same change writes. The record
  // is one line: a write-back carries a prefix of its stores, so memory
  // never holds the even version with the words half written.
  void WriteRecord(Txn& txn, region::ObjectRecord& rec,
                   std::initializer_list<std::pair<region::Word*, uint64_t>> words,
                   std::initializer_list<Txn::Change> after = {});
  // The shard's index seqlock around changes of its hash slots.
  void OpenIndex(Txn& txn, uint32_t shard);
  void CloseIndex(Txn& txn, uint32_t shard, uint32_t first_slot, uint32_t count);
  // Frees the object at `loc`: its block, its hash slot, its record.
  // REQUIRES: its shard lock.
  void FreeObject(Txn& txn, const Located& loc);
  // Client `slot`'s held table and summary.
  region::NcTable TableOf(uint32_t slot) const;
  // Whether client `slot` has a session (a free slot's lines were cleared
  // by its recovery: nothing in them to read).
  bool Live(uint32_t slot) const;
  // O2, as memory has the tables now: the records whose bucket `wanted`
  // marks that some live client's table references. Reads each live
  // client's summary, and the table of each whose summary meets `wanted`.
  std::set<uint32_t> Referenced(const region::NcSummary& wanted);
  region::NcSummary SummaryOf(const std::set<uint32_t>& records) const;
  enum class Holders { kNone, kSome, kUnknown };
  // O2 for record `global`: every live client's summary, and the tables of
  // those that mark its bucket, reading at most `max_tables` tables
  // (kUnknown when more are marked).
  Holders HoldersOf(uint32_t global, uint32_t max_tables);
  // Frees `global` if it is still deleting and nobody holds it (the tables
  // checked first when `check_tables`).
  bool FreeIfUnheld(uint32_t global, bool check_tables);
  // GISMO_OK, or GISMO_ERR_LIMIT if `slot` owns the most objects a client
  // may own (counted again from the records when the count says so).
  gismo_status_t CheckOwnedLimit(uint32_t slot);
  uint32_t OwnedLimit() const;
  // Before a create of `id`: a deleted object of that id still waiting for
  // a sweep is freed now if no table holds it (so a create after a delete
  // finds the id free, as in a coherent region).
  void FreeDeletedId(const region::IdWords& id);

  // If `global` waits for a sweep: freed now (and no longer waiting) if no
  // table holds it, all under the shared mutex. True if it was waiting.
  bool FreeIfPendingAndUnheld(uint32_t global);
  void AddPending(uint32_t global);

  const region::Region& r_;
  const uint32_t txn_slot_;
  uint64_t session_;
  std::unique_ptr<NcOwnerShared> own_shared_;  // when it is the only one
  NcOwnerShared* shared_;
  // Held by each public call (the Txn slot, the clients, the counters are
  // this store's); recursive: Serve's creates call Sweep and Evict.
  mutable std::recursive_mutex mu_;
  region::HwLines lines_;
  Allocator alloc_;
  Names names_;
  std::map<uint32_t, Client> clients_;
  // Owned objects (created or sealed) per slot, an upper bound: exact when
  // counted from the records, raised by each owned create, not lowered by
  // deletes; counted again when it reaches the limit.
  std::map<uint32_t, uint32_t> owned_;
  std::vector<gismo_id_t> changed_;
  region::EventEntry* event_ = nullptr;  // appended by the request being applied
  uint64_t event_seq_ = 0;
  NcOwnerStats stats_;
};

}  // namespace gismo::store

#endif  // GISMO_STORE_NC_OWNER_H_
