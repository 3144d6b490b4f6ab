#include "store/nc_owner.h"

#include <algorithm>
#include <array>

#include "common/check.h"
#include "common/clock.h"
#include "common/crash_point.h"
#include "store/event_ring.h"
#include "store/store.h"

namespace gismo::store {

using namespace region;  // NOLINT: layout names are this file's vocabulary

namespace {

constexpr uint32_t kNoRecord = ~0u;
// The most tables a delete reads before its answer (those whose summaries
// mark its record's bucket); past them it waits for the next sweep.
constexpr uint32_t kTablesPerDelete = 2;

OpKind KindOf(NcOp op) {
  switch (op) {
    case NcOp::kCreate:
      return OpKind::kCreate;
    case NcOp::kSeal:
      return OpKind::kSeal;
    case NcOp::kAbort:
      return OpKind::kAbort;
    case NcOp::kDelete:
      return OpKind::kDelete;
    case NcOp::kBindName:
    case NcOp::kSwapName:
      return OpKind::kBindName;
    case NcOp::kUnbindName:
      return OpKind::kUnbindName;
    default:
      return OpKind::kNone;
  }
}

uint64_t BlockBytesOf(uint64_t sizes) { return BlockBytes(SizesData(sizes), SizesMeta(sizes)); }

Word& AsWord(uint64_t* w) { return *reinterpret_cast<Word*>(w); }

}  // namespace

NcOwnerStore::Client::Client(HwLines& lines, const Region& r, uint32_t slot, uint64_t s)
    : session(s),
      requests(lines, r.request_ring(slot), r.request_ring_capacity(), s),
      responses(lines, r.response_ring(slot), r.request_ring_capacity(), s) {}

NcOwnerStore::NcOwnerStore(const Region& r, uint64_t session)
    : NcOwnerStore(r, 0, session, nullptr) {}

NcOwnerStore::NcOwnerStore(const Region& r, uint32_t txn_slot, uint64_t session,
                           NcOwnerShared* shared)
    : r_(r),
      txn_slot_(txn_slot),
      session_(session),
      own_shared_(shared == nullptr ? std::make_unique<NcOwnerShared>() : nullptr),
      shared_(shared == nullptr ? own_shared_.get() : shared),
      alloc_(r),
      names_(r, txn_slot, session) {
  GISMO_DCHECK(r.noncoherent());
}

std::vector<gismo_id_t> NcOwnerStore::TakeChanged() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  return std::exchange(changed_, {});
}

NcOwnerStats NcOwnerStore::stats() const {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  return stats_;
}

bool NcOwnerStore::HasPendingFrees() const {
  std::lock_guard<std::recursive_mutex> lk(shared_->mu);
  return !shared_->pending.empty();
}

void NcOwnerStore::AddPending(uint32_t global) {
  std::lock_guard<std::recursive_mutex> lk(shared_->mu);
  shared_->pending.insert(global);
}

bool NcOwnerStore::FreeIfPendingAndUnheld(uint32_t global) {
  // Under the shared mutex throughout: a release that finds the record
  // waiting frees it before it answers, whichever thread swept last.
  std::lock_guard<std::recursive_mutex> lk(shared_->mu);
  if (shared_->pending.count(global) == 0) return false;
  if (FreeIfUnheld(global, true)) shared_->pending.erase(global);
  return true;
}

void NcOwnerStore::Admit(uint32_t slot, uint64_t session) {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  if (auto it = clients_.find(slot); it != clients_.end()) {
    if (it->second.session == session) return;
    clients_.erase(it);
    owned_.erase(slot);
  }
  Client& c = clients_.try_emplace(slot, lines_, r_, slot, session).first->second;
  c.requests.Attach();
  // The response ring's indices: tail is this owner's line, head the
  // client's; a ring whose indices are impossible was left so by a broken
  // client of an earlier session, and Recover cleared it. Attach reads them.
  if (!c.responses.Attach()) return;
  // A previous owner that died after a request's head committed and before
  // its answer was published left that answer staged. One staged for a
  // request whose head did not commit (the owner died in its Txn) is
  // dropped: the request is taken again and answered again.
  region::RequestPayload staged;
  region::NcResponse a;
  if (c.responses.Staged(&staged) &&
      DecodeNcResponse(staged, r_.num_records(), r_.heap_size(), &a).ok() &&
      a.request_seq <= c.requests.head() && c.responses.HasRoomFor(1)) {
    c.responses.Publish();
    ++stats_.answers_found;
  }
}

Result<uint32_t> NcOwnerStore::Serve(uint32_t slot, uint32_t max) {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  auto it = clients_.find(slot);
  if (it == clients_.end()) return 0u;
  Client& c = it->second;
  const uint64_t records = r_.num_records();
  uint32_t taken = 0;
  // A client that leaves its answers unread gets no more of its requests
  // applied until it reads them: each answer is staged on the response
  // ring before its request's head commits (StageAnswer).
  while (taken < max && c.responses.HasRoomFor(1)) {
    NcRequest q;
    uint64_t seq = 0;
    auto got = TakeNcRequest(c.requests, records, &q, &seq);
    if (!got.ok()) {
      clients_.erase(it);
      return got.status();
    }
    if (!*got) break;
    ++taken;
    if (q.op == NcOp::kCreate) FreeDeletedId(q.id);
    c.serving_seq = seq;
    c.serving_op = q.op;
    if (q.op == NcOp::kEvict) {
      EvictRequest(c, q);
    } else if (q.op == NcOp::kReleased) {
      ReleasedRequest(c, q);
    } else {
      ApplyRequest(c, slot, q);
    }
    GISMO_CRASH_POINT("nc_owner.before_answer");
    c.responses.Publish();
    ++stats_.applied;
  }
  return taken;
}

uint32_t NcOwnerStore::ServeAll(uint32_t max_each,
                                std::vector<std::pair<uint32_t, Status>>* broken) {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  std::vector<uint32_t> slots;
  slots.reserve(clients_.size());
  for (const auto& entry : clients_) slots.push_back(entry.first);
  uint32_t taken = 0;
  for (uint32_t slot : slots) {
    auto got = Serve(slot, max_each);
    if (got.ok()) {
      taken += *got;
    } else {
      broken->emplace_back(slot, got.status());
    }
  }
  return taken;
}

void NcOwnerStore::StageAnswer(Client& c, NcResponse a) {
  a.request_seq = c.serving_seq;
  a.op = c.serving_op;
  c.responses.Stage(EncodeNcResponse(a));  // Serve found room for it
}

void NcOwnerStore::EvictRequest(Client& c, const NcRequest& q) {
  // Its own Txns (one per object, as evict.cc); the head alone after.
  NcResponse a;
  a.value = Evict(q.bytes);
  StageAnswer(c, a);
  c.requests.Commit(c.requests.taken());
}

void NcOwnerStore::ReleasedRequest(Client& c, const NcRequest& q) {
  // Nothing of it needs undoing: the head commits alone, the free (if any)
  // in a Txn of its own.
  StageAnswer(c, NcResponse{});
  c.requests.Commit(c.requests.taken());
  (void)FreeIfPendingAndUnheld(static_cast<uint32_t>(q.record));  // below the records: decoded so
}

void NcOwnerStore::ApplyRequest(Client& c, uint32_t slot, const NcRequest& q) {
  NcResponse a;
  for (int attempt = 0;; ++attempt) {
    Txn txn(r_, txn_slot_, session_, KindOf(q.op));
    uint32_t deleted = kNoRecord;
    event_ = nullptr;
    a = q.op == NcOp::kDelete ? Delete(slot, q, txn, &deleted) : Apply(slot, q, txn);
    if (a.status == GISMO_OK) {
      // The request's consumption commits with its effects, its answer
      // staged before (flushed: the commit record's fence orders it first).
      txn.Write(AsWord(c.requests.head_word()), c.requests.taken());
      StageAnswer(c, a);
      GISMO_CRASH_POINT("nc_owner.before_commit");
      if (Status s = txn.Commit(); !s.ok()) {
        a = NcResponse{};
        a.status = s.code();
        StageAnswer(c, a);
        c.requests.Commit(c.requests.taken());
        return;
      }
      c.requests.Committed(c.requests.taken());
      PublishCommittedEvent();
      if (q.op == NcOp::kSeal || q.op == NcOp::kAbort || q.op == NcOp::kDelete) {
        changed_.push_back(FromWords(q.id));
      } else if (q.op == NcOp::kBindName || q.op == NcOp::kSwapName || q.op == NcOp::kUnbindName) {
        changed_.push_back(NameWatchId(q.name));
      }
      // O2 and O3 before the answer, unless some table holds it (or more
      // summaries mark its bucket than a delete reads tables): then at the
      // holder's release, or the next sweep.
      if (deleted != kNoRecord && !(HoldersOf(deleted, kTablesPerDelete) == Holders::kNone &&
                                    FreeIfUnheld(deleted, false))) {
        AddPending(deleted);
      }
      if (q.op == NcOp::kCreate && !a.existed && (q.create_flags & kObjectFlagOwned) != 0) {
        ++owned_[slot];
      }
      return;
    }
    // A request that fails changes nothing: its head commits alone.
    txn.Rollback();
    // A create that does not fit: first the deletes waiting for a sweep,
    // then eviction of the region's evict share (evict.cc), then no.
    if (a.status == GISMO_ERR_OUT_OF_MEMORY && q.op == NcOp::kCreate && attempt < 2) {
      if (attempt == 0 && Sweep() > 0) continue;
      const uint64_t bytes = BlockBytes(q.data_size, q.metadata_size);
      if (Evict(std::max(Allocator::BlockSize(bytes), EvictShare())) > 0) {
        attempt = 1;
        continue;
      }
    }
    StageAnswer(c, a);
    c.requests.Commit(c.requests.taken());
    return;
  }
}

void NcOwnerStore::AppendEventOf(Txn& txn, uint32_t slot, EventKind kind, const Located& loc) {
  const uint32_t node =
      static_cast<uint32_t>(r_.slot(slot).node_id.load(std::memory_order_relaxed));
  event_ = AppendEvent(txn, kind, node, IdOf(*loc.rec),
                       loc.rec->sizes.load(std::memory_order_relaxed), &event_seq_);
}

void NcOwnerStore::PublishCommittedEvent() {
  if (event_ == nullptr) return;
  PublishEvent(event_, event_seq_);
  // The entry (its state word last) and the head, for subscribers on
  // other hosts (store::ReadEvent invalidates them), under one fence: in no
  // order between them (a reader that finds the head's line ahead of the
  // entry's sees the entry unpublished and waits, as it does while the
  // head, moved at the claim, reaches memory early), both before the
  // manager's wake-up of the subscribers.
  const std::pair<uint64_t, uint64_t> lines[] = {
      {r_.OffsetOf(event_), sizeof(EventEntry)},
      {r_.OffsetOf(&r_.event_ring().head), sizeof(Word)}};
  r_.PersistAll(lines, 2);
  event_ = nullptr;
}

bool NcOwnerStore::AnyPending() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  for (auto& [slot, c] : clients_) {
    // A client that leaves its answers unread has none of its requests
    // served until it reads them (Serve): they are no work, or its owner
    // thread would never sleep and spin on them for ever. Once it reads,
    // the manager's tick serves it again.
    if (!c.responses.HasRoomFor(1)) continue;
    if (c.requests.Pending()) return true;
  }
  return false;
}

NcResponse NcOwnerStore::Apply(uint32_t slot, const NcRequest& q, Txn& txn) {
  switch (q.op) {
    case NcOp::kCreate:
      return Create(slot, q, txn);
    case NcOp::kSeal:
      return Seal(slot, q, txn);
    case NcOp::kAbort:
      return Abort(slot, q, txn);
    case NcOp::kBindName:
    case NcOp::kSwapName:
    case NcOp::kUnbindName:
      return Name(q, txn);
    case NcOp::kTouch:
      return Touch(q, txn);
    default: {
      // Goodbye through the rings is not served: a client leaves through
      // its connection, and the library never sends one (kEvict is applied
      // in Serve, outside a request's Txn).
      NcResponse a;
      a.status = GISMO_ERR_UNSUPPORTED;
      return a;
    }
  }
}

void NcOwnerStore::WriteRecord(Txn& txn, ObjectRecord& rec,
                               std::initializer_list<std::pair<Word*, uint64_t>> words,
                               std::initializer_list<Txn::Change> after) {
  constexpr size_t kMax = 16;
  GISMO_DCHECK(words.size() + after.size() + 2 <= kMax);
  std::array<Txn::Change, kMax> changes;
  size_t n = 0;
  const uint64_t odd = Txn::NextOddVersion(rec.ref_count.load(std::memory_order_relaxed));
  changes[n++] = {&rec.ref_count, odd, true};
  for (const auto& [word, value] : words) changes[n++] = {word, value, false};
  changes[n++] = {&rec.ref_count, odd + 1, true};
  for (const Txn::Change& c : after) changes[n++] = c;
  txn.WriteAll(changes.data(), n);
}

void NcOwnerStore::OpenIndex(Txn& txn, uint32_t shard) {
  ShardHeader& sh = r_.shard(shard);
  txn.OpenVersion(sh.index_version);
  // Odd in memory before any slot line can be written back.
  r_.Persist(&sh.index_version, sizeof(Word));
}

void NcOwnerStore::CloseIndex(Txn& txn, uint32_t shard, uint32_t first_slot, uint32_t count) {
  Word* slots = r_.hash_slots(shard);
  const uint32_t mask = r_.fixed().slots_per_shard - 1;
  for (uint32_t n = 0; n < count && n <= mask; ++n) {
    r_.Persist(&slots[(first_slot + n) & mask], sizeof(Word));
  }
  ShardHeader& sh = r_.shard(shard);
  txn.CloseVersion(sh.index_version);
  r_.Persist(&sh.index_version, sizeof(Word));
}

NcResponse NcOwnerStore::Create(uint32_t slot, const NcRequest& q, Txn& txn) {
  NcResponse a;
  const gismo_id_t id = FromWords(q.id);
  const uint64_t bytes = BlockBytes(q.data_size, q.metadata_size);
  if (Status s = CheckFits(r_, bytes); !s.ok()) {
    a.status = s.code();
    return a;
  }
  const uint64_t h = HashId(id);
  const uint32_t shard = r_.ShardOf(h);
  if (!txn.Lock(r_.shard(shard).lock)) {
    a.status = txn.failure().code();
    return a;
  }
  Located loc;
  if (Find(r_, shard, h, id, &loc)) {
    const uint64_t info = loc.rec->info.load(std::memory_order_relaxed);
    if ((q.flags & kNcGetIfExists) != 0 && InfoState(info) == ObjectState::kSealed) {
      a.existed = true;
      a.record = GlobalIndex(r_, shard, loc.local);
      // Nothing changed: the caller commits the head alone.
      a.status = GISMO_OK;
      return a;
    }
    // The same create from the same client, asked again after its wait for
    // the first answer timed out (the first was applied meanwhile, by this
    // owner or a predecessor): answered again, so the client learns of the
    // object it made. Nothing changes.
    if (InfoState(info) == ObjectState::kCreated && InfoSlot(info) == slot &&
        loc.rec->sizes.load(std::memory_order_relaxed) == PackSizes(q.data_size, q.metadata_size) &&
        (InfoFlags(info) & kObjectFlagsPublic) == q.create_flags) {
      a.record = GlobalIndex(r_, shard, loc.local);
      a.heap_offset = loc.rec->heap_offset.load(std::memory_order_relaxed);
      a.status = GISMO_OK;
      return a;
    }
    a.status = GISMO_ERR_OBJECT_EXISTS;
    return a;
  }
  if (loc.hslot == kNoHashSlot) {
    a.status = GISMO_ERR_LIMIT;
    return a;
  }
  if ((q.create_flags & kObjectFlagOwned) != 0 && CheckOwnedLimit(slot) != GISMO_OK) {
    a.status = GISMO_ERR_LIMIT;
    a.value = OwnedLimit();
    return a;
  }
  auto local = TakeRecord(txn, shard);
  if (!local.ok()) {
    a.status = local.status().code();
    return a;
  }
  auto off = alloc_.Allocate(txn, bytes, slot);
  if (!off.ok() || txn.failed()) {
    a.status = off.ok() ? txn.failure().code() : off.status().code();
    return a;
  }
  ObjectRecord& rec = r_.records(shard)[*local];
  if ((q.create_flags & kObjectFlagEvictable) != 0) {
    // For CLOCK's ring. Should this create be undone, the hand drops the
    // record when it finds it free.
    std::lock_guard<std::mutex> created(shared_->created_mu);
    std::vector<uint32_t>& v = shared_->created_evictable;
    if (v.size() >= r_.num_records()) {
      v.clear();
      shared_->created_dropped = true;
    }
    v.push_back(GlobalIndex(r_, shard, *local));
  }
  const uint32_t node =
      static_cast<uint32_t>(r_.slot(slot).node_id.load(std::memory_order_relaxed));
  // An evictable object starts with its reference bit set (evict.cc, 3).
  const uint32_t stored = (q.create_flags & kObjectFlagEvictable) != 0
                              ? q.create_flags | kObjectFlagReferenced
                              : q.create_flags;
  // Then its hash slot: an insert moves no other slot, so it needs no index
  // seqlock (a reader that misses the new slot calls the object absent,
  // which it was until this create is answered).
  ShardHeader& sh = r_.shard(shard);
  WriteRecord(txn, rec,
              {{&rec.id[0], q.id.w[0]},
               {&rec.id[1], q.id.w[1]},
               {&rec.id[2], q.id.w[2]},
               {&rec.info, PackInfo(ObjectState::kCreated, slot, node, stored)},
               {&rec.heap_offset, *off},
               {&rec.sizes, PackSizes(q.data_size, q.metadata_size)},
               {&rec.create_time_ns, RealtimeNs()}},
              {{&r_.hash_slots(shard)[loc.hslot], PackHashSlot(h, *local)},
               {&sh.count, sh.count.load(std::memory_order_relaxed) + 1}});
  a.status = txn.failed() ? txn.failure().code() : GISMO_OK;
  a.record = GlobalIndex(r_, shard, *local);
  a.heap_offset = *off;
  return a;
}

Status NcOwnerStore::LockRecord(Txn& txn, uint64_t global, const IdWords& id, Located* loc) {
  if (!r_.ValidRecord(global)) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND, "no such record");
  }
  const uint32_t shard = static_cast<uint32_t>(global / r_.records_per_shard());
  if (!txn.Lock(r_.shard(shard).lock)) return txn.failure();
  if (!FindByRecord(r_, static_cast<uint32_t>(global), loc) || !SameId(*loc->rec, id)) {
    return Status(GISMO_ERR_OBJECT_NOT_FOUND, "the record holds another object");
  }
  return Status();
}

gismo_status_t NcOwnerStore::LockUnsealed(Txn& txn, uint32_t slot, const NcRequest& q,
                                          Located* loc) {
  if (Status s = LockRecord(txn, q.record, q.id, loc); !s.ok()) return s.code();
  const uint64_t info = loc->rec->info.load(std::memory_order_relaxed);
  if (InfoState(info) == ObjectState::kSealed) return GISMO_ERR_OBJECT_ALREADY_SEALED;
  if (InfoState(info) != ObjectState::kCreated) return GISMO_ERR_OBJECT_NOT_FOUND;
  if (InfoSlot(info) != slot) return GISMO_ERR_NOT_CREATOR;
  return GISMO_OK;
}

NcResponse NcOwnerStore::Seal(uint32_t slot, const NcRequest& q, Txn& txn) {
  NcResponse a;
  Located loc;
  a.status = LockUnsealed(txn, slot, q, &loc);
  if (a.status == GISMO_ERR_OBJECT_ALREADY_SEALED &&
      InfoSlot(loc.rec->info.load(std::memory_order_relaxed)) == slot) {
    // Its creator asks again after its wait for the first answer timed out
    // (a creator that learned of its seal never asks twice): sealed.
    a.status = GISMO_OK;
    return a;
  }
  if (a.status != GISMO_OK) return a;
  // The creator flushed the object's bytes before it asked (section 6).
  const uint64_t info = loc.rec->info.load(std::memory_order_relaxed);
  SetInfo(txn, *loc.rec, PackInfo(ObjectState::kSealed, slot, InfoNode(info), InfoFlags(info)));
  AppendEventOf(txn, slot, EventKind::kSealed, loc);
  a.status = txn.failed() ? txn.failure().code() : GISMO_OK;
  return a;
}

NcResponse NcOwnerStore::Abort(uint32_t slot, const NcRequest& q, Txn& txn) {
  NcResponse a;
  Located loc;
  a.status = LockUnsealed(txn, slot, q, &loc);
  if (a.status != GISMO_OK) return a;
  // Unsealed: no reader ever took a reference (G2 wants it sealed), and
  // the creator dropped its own before it asked.
  FreeObject(txn, loc);
  ++stats_.freed;
  a.status = txn.failed() ? txn.failure().code() : GISMO_OK;
  return a;
}

NcResponse NcOwnerStore::Name(const NcRequest& q, Txn& txn) {
  NcResponse a;
  const gismo_id_t id = FromWords(q.id);
  const gismo_id_t expected = FromWords(q.expected);
  const bool has_expected = (q.flags & kNcHasExpected) != 0;
  Status s;
  if (q.op == NcOp::kUnbindName) {
    s = names_.UnbindIn(txn, q.name, has_expected ? &expected : nullptr);
  } else {
    const BindMode mode = q.op == NcOp::kBindName ? BindMode::kAlways
                          : has_expected          ? BindMode::kIfBoundTo
                                                  : BindMode::kIfUnbound;
    s = names_.BindIn(txn, q.name, id, mode, has_expected ? &expected : nullptr, &a.value);
  }
  a.status = s.code();
  return a;
}

NcResponse NcOwnerStore::Touch(const NcRequest& q, Txn& txn) {
  NcResponse a;
  const gismo_id_t id = FromWords(q.id);
  Located loc;
  bool found = false;
  if (!LockAndFind(txn, id, &found, &loc)) {
    a.status = txn.failure().code();
    return a;
  }
  const uint64_t info = found ? loc.rec->info.load(std::memory_order_relaxed) : 0;
  if (!found || InfoState(info) == ObjectState::kDeleting) {
    a.status = GISMO_ERR_OBJECT_NOT_FOUND;
  } else if ((InfoFlags(info) & kObjectFlagEvictable) == 0) {
    a.status = GISMO_OK;  // nothing to mark: it is never evicted
  } else {
    SetInfo(txn, *loc.rec, info | PackInfo(ObjectState::kFree, 0, 0, kObjectFlagReferenced));
    a.status = txn.failed() ? txn.failure().code() : GISMO_OK;
  }
  return a;
}

void NcOwnerStore::SetInfo(Txn& txn, ObjectRecord& rec, uint64_t info) {
  if (rec.info.load(std::memory_order_relaxed) == info) return;
  WriteRecord(txn, rec, {{&rec.info, info}});
}

uint64_t NcOwnerStore::EvictShare() const {
  uint64_t pct = r_.sb().evict_percent.load(std::memory_order_relaxed);
  if (pct == 0 || pct > 100) pct = 20;
  return r_.heap_size() / 100 * pct;
}

uint32_t NcOwnerStore::TakeNotedGets() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  std::lock_guard<std::recursive_mutex> shared(shared_->mu);
  const uint32_t records = r_.num_records();
  std::vector<std::pair<uint32_t, uint32_t>> notes;  // record, version's low 32 bits
  for (uint32_t i = 1; i < r_.max_clients(); ++i) {
    if (!Live(i)) {
      continue;  // a free slot's line was cleared by its recovery
    }
    NcForEachRecentGet(lines_, TableOf(i), records, [&](uint32_t record, uint32_t version) {
      notes.emplace_back(record, version);
    });
  }
  uint32_t set = 0;
  for (const auto& note : notes) {
    const uint32_t g = note.first, version = note.second;
    ObjectRecord& rec = r_.record(g);
    // The owner's own lines: no invalidate. A note that no longer matches
    // was taken already (the bit's write moved the version on) or outlived
    // its object.
    auto current = [&] {
      const uint64_t info = rec.info.load(std::memory_order_relaxed);
      const bool wants =
          static_cast<uint32_t>(rec.ref_count.load(std::memory_order_relaxed)) == version &&
          InfoState(info) == ObjectState::kSealed &&
          (InfoFlags(info) & (kObjectFlagEvictable | kObjectFlagReferenced)) ==
              kObjectFlagEvictable;
      return wants ? info : 0;
    };
    if (current() == 0) continue;
    Txn txn(r_, txn_slot_, session_, OpKind::kNone);
    if (!txn.Lock(r_.shard(g / r_.records_per_shard()).lock)) continue;
    const uint64_t info = current();
    if (info == 0) continue;
    SetInfo(txn, rec, info | PackInfo(ObjectState::kFree, 0, 0, kObjectFlagReferenced));
    if (txn.Commit().ok()) ++set;
  }
  stats_.noted_gets += set;
  return set;
}

uint64_t NcOwnerStore::Evict(uint64_t want_bytes) {
  // CLOCK over the records (evict.cc), by the owner alone: a record whose
  // reference bit is set loses it; one found clear, sealed, evictable and
  // in no table when the sweep began is marked deleting (O1, its event
  // appended: reason evicted). Then one scan of the tables (O2), and the
  // marked ones no table holds are freed (O3); one a reader took meanwhile
  // waits in `pending` for its release, like a delete. One thread's hand
  // at a time (the shared mutex).
  std::lock_guard<std::recursive_mutex> lk(mu_);
  std::lock_guard<std::recursive_mutex> shared(shared_->mu);
  TakeNotedGets();
  NcSummary everything;
  everything.fill(~uint64_t{0});
  const std::set<uint32_t> held_before = Referenced(everything);
  std::vector<uint32_t>& ring = ListEvictable();
  std::vector<uint32_t> marked;
  uint64_t bytes = 0;
  // Two turns: the first may only clear reference bits.
  const uint64_t steps = 2 * ring.size();
  for (uint64_t step = 0; step < steps && !ring.empty() && bytes < want_bytes; ++step) {
    const size_t at = shared_->evict_hand++ % ring.size();
    const uint32_t g = ring[at];
    ObjectRecord& rec = r_.record(g);
    auto gone = [](uint64_t i) {  // freed, or another object's by now
      return InfoState(i) == ObjectState::kFree || (InfoFlags(i) & kObjectFlagEvictable) == 0;
    };
    const uint64_t info = rec.info.load(std::memory_order_relaxed);
    if (!gone(info) && (InfoState(info) != ObjectState::kSealed || held_before.count(g) != 0)) {
      continue;
    }
    Txn txn(r_, txn_slot_, session_, OpKind::kEvict);
    if (!txn.Lock(r_.shard(g / r_.records_per_shard()).lock)) continue;
    // Read again under the shard lock, which other owner threads' creates
    // and deletes hold from their first look at the record to their commit:
    // the word read above may be stale.
    const uint64_t locked_info = rec.info.load(std::memory_order_relaxed);
    if (gone(info)) {
      if (gone(locked_info)) {
        shared_->listed[g] = false;
        ring[at] = ring.back();
        ring.pop_back();
      }
      (void)txn.Commit();
      continue;
    }
    if (locked_info != info) {
      // Deleted, or freed and taken by another object, or its reference bit
      // set, since: what follows would undo that change (a deleting object
      // made sealed again, another object's record overwritten). Looked at
      // again on a later step.
      (void)txn.Commit();
      continue;
    }
    Located loc;
    if (!FindByRecord(r_, g, &loc)) continue;
    event_ = nullptr;
    if ((InfoFlags(info) & kObjectFlagReferenced) != 0) {
      SetInfo(txn, rec, info & ~PackInfo(ObjectState::kFree, 0, 0, kObjectFlagReferenced));
    } else {
      SetInfo(txn, rec,
              PackInfo(ObjectState::kDeleting, InfoSlot(info), InfoNode(info), InfoFlags(info)));
      ShardHeader& sh = r_.shard(loc.shard);
      txn.Write(sh.evictions, sh.evictions.load(std::memory_order_relaxed) + 1);
      txn.Write(sh.evicted_bytes,
                sh.evicted_bytes.load(std::memory_order_relaxed) +
                    Allocator::BlockSize(BlockBytesOf(rec.sizes.load(std::memory_order_relaxed))));
      const uint32_t node =
          static_cast<uint32_t>(r_.slot(0).node_id.load(std::memory_order_relaxed));
      event_ = AppendEvent(txn, EventKind::kDeleted, node, IdOf(rec),
                           rec.sizes.load(std::memory_order_relaxed), &event_seq_,
                           EventReason::kEvicted);
    }
    if (!txn.Commit().ok()) continue;
    if (event_ != nullptr) {
      PublishCommittedEvent();
      changed_.push_back(IdOf(rec));
      marked.push_back(g);
      bytes += Allocator::BlockSize(BlockBytesOf(rec.sizes.load(std::memory_order_relaxed)));
    }
  }
  if (marked.empty()) return 0;
  const std::set<uint32_t> held =
      Referenced(SummaryOf(std::set<uint32_t>(marked.begin(), marked.end())));
  for (uint32_t g : marked) {
    if (held.count(g) != 0 || !FreeIfUnheld(g, false)) shared_->pending.insert(g);
  }
  stats_.evicted += marked.size();
  return bytes;
}

std::vector<uint32_t>& NcOwnerStore::ListEvictable() {
  NcOwnerShared& sh = *shared_;  // REQUIRES: sh.mu
  const uint32_t records = r_.num_records();
  std::vector<uint32_t> created;
  {
    std::lock_guard<std::mutex> lk(sh.created_mu);
    created.swap(sh.created_evictable);
    if (sh.created_dropped) sh.evictable_scanned = false;
    sh.created_dropped = false;
  }
  if (sh.listed.size() != records) sh.listed.assign(records, false);
  auto list = [&](uint32_t g) {
    if (g < records && !sh.listed[g]) {
      sh.listed[g] = true;
      sh.evictable.push_back(g);
    }
  };
  if (!sh.evictable_scanned) {
    // The owner's own lines: no invalidate.
    for (uint32_t g = 0; g < records; ++g) {
      const uint64_t info = r_.record(g).info.load(std::memory_order_relaxed);
      if (InfoState(info) != ObjectState::kFree && (InfoFlags(info) & kObjectFlagEvictable) != 0) {
        list(g);
      }
    }
    sh.evictable_scanned = true;
  }
  for (uint32_t g : created) list(g);
  return sh.evictable;
}

NcResponse NcOwnerStore::Delete(uint32_t slot, const NcRequest& q, Txn& txn, uint32_t* deleted) {
  NcResponse a;
  const gismo_id_t id = FromWords(q.id);
  Located loc;
  bool found = false;
  if (!LockAndFind(txn, id, &found, &loc)) {
    a.status = txn.failure().code();
    return a;
  }
  if (!found) {
    a.status = GISMO_ERR_OBJECT_NOT_FOUND;
    return a;
  }
  const uint64_t info = loc.rec->info.load(std::memory_order_relaxed);
  switch (InfoState(info)) {
    case ObjectState::kCreated:
      a.status = GISMO_ERR_OBJECT_NOT_SEALED;
      return a;
    case ObjectState::kDeleting:
      a.status = GISMO_ERR_OBJECT_NOT_FOUND;
      return a;
    default:
      break;
  }
  // O1: marked deleting; the commit flushes the line before the tables are
  // read (O2, after the commit).
  SetInfo(txn, *loc.rec,
          PackInfo(ObjectState::kDeleting, InfoSlot(info), InfoNode(info), InfoFlags(info)));
  AppendEventOf(txn, slot, EventKind::kDeleted, loc);
  *deleted = GlobalIndex(r_, loc.shard, loc.local);
  a.status = txn.failed() ? txn.failure().code() : GISMO_OK;
  return a;
}

void NcOwnerStore::FreeObject(Txn& txn, const Located& loc) {
  ShardHeader& sh = r_.shard(loc.shard);
  GISMO_DCHECK(txn.Holds(sh.lock));  // REQUIRES: the shard lock
  ObjectRecord& rec = *loc.rec;
  const uint64_t sizes = rec.sizes.load(std::memory_order_relaxed);
  const uint64_t off = rec.heap_offset.load(std::memory_order_relaxed);
  if (!r_.ValidHeapBlock(off, BlockBytesOf(sizes))) {
    txn.Fail(r_.Corrupt("object " + Hex(IdOf(rec)) + " has a block outside the heap"));
    return;
  }
  Store::FreeObjectData(txn, rec);
  OpenIndex(txn, loc.shard);
  const uint32_t wrote =
      RemoveHashSlot(txn, r_.hash_slots(loc.shard), r_.fixed().slots_per_shard - 1, loc.hslot);
  CloseIndex(txn, loc.shard, loc.hslot, wrote);
  WriteRecord(
      txn, rec,
      {{&rec.id[0], 0},
       {&rec.id[1], 0},
       {&rec.id[2], 0},
       {&rec.info, PackInfo(ObjectState::kFree, 0, 0)},
       {&rec.sizes, 0},
       {&rec.heap_offset, sh.free_head.load(std::memory_order_relaxed)}},
      {{&sh.free_head, loc.local + 1}, {&sh.count, sh.count.load(std::memory_order_relaxed) - 1}});
}

NcTable NcOwnerStore::TableOf(uint32_t slot) const { return NcTableOf(r_, slot); }

bool NcOwnerStore::Live(uint32_t slot) const {
  const std::vector<uint32_t>& helpers = shared_->helper_slots;
  if (std::find(helpers.begin(), helpers.end(), slot) != helpers.end()) return false;
  return SlotStateOf(r_.slot(slot).state.load(std::memory_order_acquire)) != SlotState::kFree;
}

NcSummary NcOwnerStore::SummaryOf(const std::set<uint32_t>& records) const {
  NcSummary s{};
  for (uint32_t g : records) NcSummaryAdd(s, g);
  return s;
}

std::set<uint32_t> NcOwnerStore::Referenced(const NcSummary& wanted) {
  std::set<uint32_t> held;
  const uint32_t records = r_.num_records();
  for (uint32_t i = 1; i < r_.max_clients(); ++i) {
    if (!Live(i)) {
      continue;  // a free slot's table was cleared by its recovery
    }
    const NcTable t = TableOf(i);
    if (!NcSummaryMeets(NcReadSummary(lines_, t), wanted)) continue;
    NcForEachHeld(lines_, t, records, [&](uint32_t record, uint64_t) {
      if (NcSummaryHas(wanted, record)) held.insert(record);
    });
  }
  ++stats_.sweeps;
  return held;
}

NcOwnerStore::Holders NcOwnerStore::HoldersOf(uint32_t global, uint32_t max_tables) {
  const uint32_t records = r_.num_records();
  uint32_t read = 0;
  for (uint32_t i = 1; i < r_.max_clients(); ++i) {
    if (!Live(i)) {
      continue;
    }
    const NcTable t = TableOf(i);
    if (!NcSummaryHas(NcReadSummary(lines_, t), global)) continue;
    if (read++ == max_tables) return Holders::kUnknown;
    bool held = false;
    NcForEachHeld(lines_, t, records, [&](uint32_t record, uint64_t) { held |= record == global; });
    if (held) return Holders::kSome;
  }
  return Holders::kNone;
}

gismo_status_t NcOwnerStore::CheckOwnedLimit(uint32_t slot) {
  const uint32_t limit = OwnedLimit();
  auto it = owned_.find(slot);
  if (it != owned_.end() && it->second < limit) return GISMO_OK;
  uint32_t n = 0;
  const uint32_t records = r_.num_records();
  for (uint32_t g = 0; g < records; ++g) {
    const uint64_t info = r_.record(g).info.load(std::memory_order_relaxed);
    const ObjectState st = InfoState(info);
    n += (st == ObjectState::kCreated || st == ObjectState::kSealed) &&
         (InfoFlags(info) & kObjectFlagOwned) != 0 && InfoSlot(info) == slot;
  }
  owned_[slot] = n;
  return n < limit ? GISMO_OK : GISMO_ERR_LIMIT;
}

uint32_t NcOwnerStore::OwnedLimit() const {
  const uint32_t cap = r_.fixed().held_capacity;
  return cap - cap / 4;
}

bool NcOwnerStore::FreeIfUnheld(uint32_t global, bool check_tables) {
  if (check_tables && HoldersOf(global, ~0u) != Holders::kNone) return false;  // O2
  Txn txn(r_, txn_slot_, session_, OpKind::kDelete);
  const uint32_t shard = global / r_.records_per_shard();
  if (!txn.Lock(r_.shard(shard).lock)) return false;
  Located loc;
  if (!FindByRecord(r_, global, &loc) ||
      InfoState(loc.rec->info.load(std::memory_order_relaxed)) != ObjectState::kDeleting) {
    return true;  // not deleting any more: nothing to free
  }
  const gismo_id_t id = IdOf(*loc.rec);  // (FreeObject clears the record)
  FreeObject(txn, loc);                  // O3
  GISMO_CRASH_POINT("nc_owner.free_before_commit");
  if (!txn.Commit().ok()) return false;
  ++stats_.freed;
  // Its id is free now: a get-or-create waiting to create it again hears
  // of it (the delete's wake-up came while the id was still taken).
  std::lock_guard<std::recursive_mutex> lk(mu_);
  changed_.push_back(id);
  return true;
}

void NcOwnerStore::FreeDeletedId(const IdWords& x) {
  if (!HasPendingFrees()) return;
  const gismo_id_t id = FromWords(x);
  const uint64_t h = HashId(id);
  Located loc;
  // The owner's host's lines, unlocked: another owner thread may be moving
  // them, so the record found is only a candidate, which the free checks
  // under its shard lock (still deleting) and against the tables.
  if (!Find(r_, r_.ShardOf(h), h, id, &loc)) return;
  (void)FreeIfPendingAndUnheld(GlobalIndex(r_, loc.shard, loc.local));
}

uint32_t NcOwnerStore::SweepIfDue(uint64_t now_ns) {
  constexpr uint64_t kSweepEveryNs = 2'000'000;
  constexpr size_t kSweepAtPending = 256;
  constexpr uint64_t kNotesEveryNs = 10'000'000;
  std::lock_guard<std::recursive_mutex> lk(mu_);
  std::lock_guard<std::recursive_mutex> shared(shared_->mu);
  if (now_ns - shared_->last_notes_ns >= kNotesEveryNs) {
    shared_->last_notes_ns = now_ns;
    TakeNotedGets();
  }
  const std::set<uint32_t>& pending = shared_->pending;
  if (pending.empty() ||
      (pending.size() < kSweepAtPending && now_ns - shared_->last_sweep_ns < kSweepEveryNs)) {
    return 0;
  }
  shared_->last_sweep_ns = now_ns;
  return Sweep();
}

uint32_t NcOwnerStore::Sweep() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  std::lock_guard<std::recursive_mutex> shared(shared_->mu);
  std::set<uint32_t>& pending = shared_->pending;
  if (pending.empty()) return 0;
  const std::set<uint32_t> held = Referenced(SummaryOf(pending));
  uint32_t freed = 0;
  for (auto it = pending.begin(); it != pending.end();) {
    if (held.count(*it) == 0 && FreeIfUnheld(*it, false)) {
      ++freed;
      it = pending.erase(it);
    } else {
      ++it;
    }
  }
  return freed;
}

Status NcOwnerStore::Recover(uint32_t slot) {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  clients_.erase(slot);
  owned_.erase(slot);
  // Its table and summary: the references it held are dropped (a reference
  // counts only as an entry in a table, so there is nothing else to undo).
  NcClearTable(lines_, TableOf(slot));
  // Its rings: what it published and was not applied dies with it; the
  // next session starts with empty rings (head = tail on both).
  for (void* ring : {r_.request_ring(slot), r_.response_ring(slot)}) {
    auto* h = static_cast<RequestRingHeader*>(ring);
    lines_.Invalidate(h, sizeof(*h));
    lines_.Store(&h->head.value, lines_.Load(&h->tail.value));
    lines_.Flush(&h->head, sizeof(h->head));
  }
  // Its unsealed objects.
  const uint32_t nslots = r_.fixed().slots_per_shard;
  for (uint32_t s = 0; s < r_.num_shards(); ++s) {
    for (uint32_t i = 0; i < nslots; ++i) {
      const uint64_t v = r_.hash_slots(s)[i].load(std::memory_order_relaxed);
      if (v == 0 || HashSlotLocal(v) >= r_.records_per_shard()) continue;
      const ObjectRecord& rec = r_.records(s)[HashSlotLocal(v)];
      const uint64_t info = rec.info.load(std::memory_order_relaxed);
      if (InfoState(info) != ObjectState::kCreated || InfoSlot(info) != slot) continue;
      Txn txn(r_, txn_slot_, session_, OpKind::kRecover);
      if (!txn.Lock(r_.shard(s).lock)) return txn.Commit();
      Located loc;
      // Read again under the lock: other owner threads change the shard.
      if (!FindByRecord(r_, GlobalIndex(r_, s, HashSlotLocal(v)), &loc) ||
          InfoState(loc.rec->info.load(std::memory_order_relaxed)) != ObjectState::kCreated ||
          InfoSlot(loc.rec->info.load(std::memory_order_relaxed)) != slot) {
        continue;
      }
      FreeObject(txn, loc);
      if (Status c = txn.Commit(); !c.ok()) return c;
      ++stats_.freed;
      --i;  // the backward shift may have moved another slot into i
    }
  }
  // Its owned objects (GISMO_CREATE_OWNED) go with it: deleted, and freed
  // once no other table holds them.
  const uint32_t records = r_.num_records();
  for (uint32_t g = 0; g < records; ++g) {
    ObjectRecord& rec = r_.record(g);
    const uint64_t info = rec.info.load(std::memory_order_relaxed);
    if (InfoState(info) != ObjectState::kSealed || !InfoOwnedBy(info, slot)) continue;
    Txn txn(r_, txn_slot_, session_, OpKind::kRecover);
    if (!txn.Lock(r_.shard(g / r_.records_per_shard()).lock)) return txn.Commit();
    Located loc;
    if (!FindByRecord(r_, g, &loc) || loc.rec->info.load(std::memory_order_relaxed) != info) {
      continue;  // another owner thread's delete or eviction took it meanwhile
    }
    event_ = nullptr;
    SetInfo(txn, rec,
            PackInfo(ObjectState::kDeleting, InfoSlot(info), InfoNode(info), InfoFlags(info)));
    AppendEventOf(txn, slot, EventKind::kDeleted, loc);
    if (Status c = txn.Commit(); !c.ok()) return c;
    PublishCommittedEvent();
    changed_.push_back(IdOf(rec));
    AddPending(g);
  }
  Sweep();
  // The slabs the owner allocated its objects from (Allocate for `slot`):
  // an empty one goes back to the page heap, the others to the partial
  // lists, as a coherent client's recovery gives them back. The owner is
  // the only lock taker here: a lock busy past the wait is a stuck one.
  constexpr uint64_t kSlabLockWaitNs = 1'000'000'000;
  if (!alloc_.DisownSlabs(slot, txn_slot_, session_, kSlabLockWaitNs)) {
    return Status(GISMO_ERR_BUSY, "a size-class lock stayed busy while client slot " +
                                      std::to_string(slot) + "'s slabs were given back");
  }
  return Status();
}

void NcOwnerStore::AdoptDeleting() {
  std::lock_guard<std::recursive_mutex> shared(shared_->mu);
  const uint32_t n = r_.records_per_shard();
  for (uint32_t s = 0; s < r_.num_shards(); ++s) {
    for (uint32_t l = 0; l < n; ++l) {
      if (InfoState(r_.records(s)[l].info.load(std::memory_order_relaxed)) ==
          ObjectState::kDeleting) {
        shared_->pending.insert(GlobalIndex(r_, s, l));
      }
    }
  }
}

}  // namespace gismo::store
