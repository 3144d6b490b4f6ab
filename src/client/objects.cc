// The object operations other than get: run in this client against shared
// memory, then wake whoever waits for the change.
#include "client/client.h"

namespace gismo::client {

using protocol::MsgType;

void ClientImpl::NotifyIfWatched(MsgType type, const gismo_id_t& id, bool ring_event) {
  // A non-coherent region's owner applies every change itself and wakes
  // the waiters (the manager's ServeRequests).
  if (store_->noncoherent()) return;
  // Pairs with the manager raising a shard's `waiters` (or `subscribers`)
  // before it acknowledges a wait (or subscription): either the waiter's
  // re-check sees our change, or we see its registration.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  region::Superblock& sb = region_->sb();
  const uint32_t shard = region_->ShardOf(store::HashId(id));
  bool tell = region_->shard(shard).waiters.load(std::memory_order_relaxed) != 0;
  if (ring_event && sb.subscribers.load(std::memory_order_relaxed) != 0 &&
      !sb.kick_pending.exchange(1, std::memory_order_seq_cst)) {
    // This event starts a cycle: it wakes the subscribers it can reach
    // directly, and kicks the manager, which wakes every subscriber after
    // it clears kick_pending. An event published while the kick is pending
    // is covered by that wake-up (see Superblock::kick_pending), so a fast
    // producer costs each subscriber a wake-up per cycle, not per event.
    WakeSubscribersDirectly();
    tell = true;
  }
  if (!tell) return;
  protocol::Writer w;
  w.Id(id);
  (void)Send(w.Frame(type, 0));
}

void ClientImpl::NotifyEvicted(std::vector<gismo_id_t> ids) {
  for (const gismo_id_t& id : ids) NotifyIfWatched(MsgType::kDeleted, id);
}

Status ClientImpl::Create(const gismo_id_t& id, size_t data_size, const void* metadata,
                          size_t metadata_size, uint32_t flags, void** data) {
  Status s;
  std::vector<gismo_id_t> evicted;
  {
    std::lock_guard<std::mutex> op(op_mu_);
    if (s = CheckAlive(); !s.ok()) return s;
    s = store_->Create(id, data_size, metadata, metadata_size, flags, data);
    evicted = store_->TakeEvicted();
  }
  NotifyEvicted(std::move(evicted));
  // A large object is about to be written whole: its page tables in one call
  // rather than a fault per page (outside op_mu_: it may take milliseconds).
  if (s.ok() && data_size >= kPopulateBytes) region_->PopulateForWrite(*data, data_size);
  return s;
}

Status ClientImpl::Evict(uint64_t bytes, uint64_t* evicted_bytes) {
  Status s;
  std::vector<gismo_id_t> evicted;
  store::EvictResult got;
  {
    std::lock_guard<std::mutex> op(op_mu_);
    if (s = CheckAlive(); !s.ok()) return s;
    store::EvictTarget want;
    want.bytes = bytes;
    s = store_->Evict(want, &got);
    evicted = store_->TakeEvicted();
  }
  NotifyEvicted(std::move(evicted));
  *evicted_bytes = got.bytes;
  return s;
}

Status ClientImpl::Touch(const gismo_id_t& id) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return store_->Touch(id);
}

Status ClientImpl::Seal(const gismo_id_t& id) {
  {
    std::lock_guard<std::mutex> op(op_mu_);
    if (Status s = CheckAlive(); !s.ok()) return s;
    if (Status s = store_->Seal(id); !s.ok()) return s;
  }
  NotifyIfWatched(MsgType::kSealed, id);
  return Status();
}

Status ClientImpl::Abort(const gismo_id_t& id) {
  {
    std::lock_guard<std::mutex> op(op_mu_);
    if (Status s = CheckAlive(); !s.ok()) return s;
    if (Status s = store_->Abort(id); !s.ok()) return s;
  }
  // Getters waiting for it re-check (one of them may create it now).
  NotifyIfWatched(MsgType::kDeleted, id, /*ring_event=*/false);
  return Status();
}

Status ClientImpl::Release(const gismo_id_t& id) {
  bool freed = false;
  {
    std::lock_guard<std::mutex> op(op_mu_);
    if (Status s = CheckAlive(); !s.ok()) return s;
    if (Status s = store_->Release(id, &freed); !s.ok()) return s;
  }
  // The last reference to a deleted object: its id is free now, which a
  // get-or-create waiting to create it again must hear of (the delete's
  // own notice came while the id was still taken).
  if (freed) NotifyIfWatched(MsgType::kDeleted, id, /*ring_event=*/false);
  return Status();
}

Status ClientImpl::Delete(const gismo_id_t& id) {
  {
    std::lock_guard<std::mutex> op(op_mu_);
    if (Status s = CheckAlive(); !s.ok()) return s;
    if (Status s = store_->Delete(id); !s.ok()) return s;
  }
  NotifyIfWatched(MsgType::kDeleted, id);
  return Status();
}

Status ClientImpl::Contains(const gismo_id_t& id, bool* contains) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return store_->Contains(id, contains);
}

Status ClientImpl::Stat(const gismo_id_t& id, gismo_object_info_t* info) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return store_->Stat(id, info);
}

Status ClientImpl::List(gismo_object_info_t* infos, size_t capacity, size_t* count) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  size_t n = 0;
  Status listed = store_->ForEach([&](const gismo_object_info_t& info) {
    if (n < capacity) infos[n] = info;
    ++n;
  });
  if (listed.ok()) *count = n;  // never a partial count (gismo_list)
  return listed;
}

Status ClientImpl::Usage(gismo_usage_t* usage) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return store_->Usage(usage);
}

Status ClientImpl::ListClients(gismo_client_info_t* infos, size_t capacity, size_t* count) {
  if (Status s = CheckAlive(); !s.ok()) return s;
  size_t n = 0;
  store_->ForEachClient([&](const gismo_client_info_t& info) {
    if (n < capacity) infos[n] = info;
    ++n;
  });
  *count = n;
  return Status();
}

}  // namespace gismo::client
