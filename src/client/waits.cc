// Get: takes what is sealed now, and waits for the rest through the
// manager (a registered wait, woken by a seal anywhere).
#include <chrono>
#include <cstring>

#include "client/client.h"
#include "common/atomic.h"
#include "common/check.h"
#include "common/clock.h"

namespace gismo::client {

using protocol::MsgType;

Status ClientImpl::Get(const gismo_id_t* ids, size_t count, int64_t timeout_ms,
                       gismo_buffer_t* buffers) {
  Status s = GetImpl(ids, count, timeout_ms, buffers, nullptr);
  if (s.ok()) PopulateLarge(buffers, count);
  return s;
}

void ClientImpl::PopulateLarge(const gismo_buffer_t* buffers, size_t count) const {
  for (size_t i = 0; i < count; ++i) {
    if (buffers[i].data != nullptr && buffers[i].data_size >= kPopulateBytes) {
      region_->PopulateForRead(buffers[i].data, buffers[i].data_size);
    }
  }
}

// Load once: create is the arbiter. Every sweep that finds the object
// absent tries to create it; OBJECT_EXISTS means another client loads it,
// and this one waits for its seal like any get. The loader's abort, its
// recovery, and a delete or eviction all wake the waiters (NotifyIfWatched,
// and the manager after every recovery), whose next sweep creates again:
// one wins, the others wait on. A sweep runs under op_mu_, so one client's
// threads race only through the store, like separate clients.
Status ClientImpl::GetOrCreate(const gismo_id_t& id, size_t data_size, const void* metadata,
                               size_t metadata_size, uint32_t flags, int64_t timeout_ms,
                               gismo_buffer_t* buffer, void** data) {
  *data = nullptr;
  // Checked whatever the store holds: the same arguments must not pass when
  // the object is sealed and fail when it is absent.
  if (Status bad = store::CheckCreateArgs(flags, data_size, metadata_size); !bad.ok()) return bad;
  CreateSpec spec{data_size, metadata, metadata_size, flags, data};
  Status s = GetImpl(&id, 1, timeout_ms, buffer, &spec);
  if (!s.ok()) return s;
  PopulateLarge(buffer, 1);
  if (*data != nullptr && data_size >= kPopulateBytes) region_->PopulateForWrite(*data, data_size);
  if (*data == nullptr && buffer->data == nullptr) {
    return Status(GISMO_ERR_TIMEOUT, "object " + store::Hex(id) +
                                         " was neither sealed by its loader nor free to "
                                         "create within the timeout");
  }
  return Status();
}

template <typename Pred>
bool ClientImpl::WaitOnState(std::unique_lock<std::mutex>& lk,
                             std::chrono::steady_clock::time_point deadline, Pred pred) {
  GISMO_DCHECK(lk.owns_lock() && lk.mutex() == &state_mu_);
  if (deadline == std::chrono::steady_clock::time_point::max()) {
    state_cv_.wait(lk, pred);
    return true;
  }
  return state_cv_.wait_until(lk, deadline, pred);
}

Status ClientImpl::RegisterWait(uint64_t wait_id, const std::vector<gismo_id_t>& ids,
                                uint64_t* registered_epoch,
                                std::chrono::steady_clock::time_point deadline,
                                uint64_t* seen_wake_seq) {
  // Until the wait is acknowledged on the connection of the moment: one
  // that breaks before the acknowledgement took the wait with it, and the
  // next connection must have it too (else nothing would wake the caller).
  for (;;) {
    uint64_t epoch;
    {
      std::lock_guard<std::mutex> lk(state_mu_);
      epoch = connection_epoch_;
      open_requests_.emplace(wait_id, MsgType::kWait);  // until EndWait
      *seen_wake_seq = wake_seq_;
    }
    if (epoch == *registered_epoch) return Status();
    *registered_epoch = epoch;
    protocol::Writer w;
    w.U32(static_cast<uint32_t>(ids.size()));
    for (const gismo_id_t& id : ids) w.Id(id);
    // A failed send means the connection is down: no acknowledgement comes
    // on it, and the re-attach moves the epoch on.
    (void)Send(w.Frame(MsgType::kWait, wait_id), kRequestSendMs);
    std::unique_lock<std::mutex> lk(state_mu_);
    // A connection that is down acknowledges nothing until the re-attach,
    // which moves the epoch on (and this wait registers again then): the
    // caller meanwhile looks at the region itself (WakeOrLookAgain).
    WaitOnState(lk, deadline, [&] {
      return acked_waits_.count(wait_id) > 0 || request_errors_.count(wait_id) > 0 ||
             LoadAcquire(lost_) || connection_epoch_ != epoch ||
             (connection_down_ && LooksWhileDown());
    });
    if (auto it = request_errors_.find(wait_id); it != request_errors_.end()) return it->second;
    if (connection_epoch_ == epoch) {  // acknowledged, lost, or the deadline
      *seen_wake_seq = wake_seq_;
      return Status();
    }
  }
}

std::chrono::steady_clock::time_point ClientImpl::WakeOrLookAgain(
    const std::unique_lock<std::mutex>& lk, std::chrono::steady_clock::time_point deadline) const {
  GISMO_DCHECK(lk.owns_lock() && lk.mutex() == &state_mu_);
  if (!connection_down_ || !LooksWhileDown()) return deadline;
  return std::min(deadline,
                  std::chrono::steady_clock::now() + std::chrono::milliseconds(kLookWhileDownMs));
}

bool ClientImpl::LooksWhileDown() const { return !store_->noncoherent(); }

void ClientImpl::EndWait(uint64_t wait_id) {
  {
    std::lock_guard<std::mutex> lk(state_mu_);
    acked_waits_.erase(wait_id);
    open_requests_.erase(wait_id);
    request_errors_.erase(wait_id);
  }
  if (!LoadAcquire(lost_)) {
    protocol::Writer c;
    (void)Send(c.Frame(MsgType::kCancelWait, wait_id));
  }
}

Status ClientImpl::GetImpl(const gismo_id_t* ids, size_t count, int64_t timeout_ms,
                           gismo_buffer_t* buffers, const CreateSpec* create) {
  const auto deadline = SteadyDeadline(timeout_ms, std::chrono::steady_clock::now());
  std::vector<size_t> pending;
  std::vector<size_t> taken;
  // REQUIRES: op_mu_. Hands out no buffer. The references are released
  // while the slot is still this session's (also after a lost connection:
  // the client stays its slot's only writer until it is fenced); a session
  // that has ended (the manager dropped its references with the rest of it)
  // or said goodbye writes nothing more to a slot that may be another
  // session's by now.
  auto release_taken = [&] {
    const bool mine = !LoadAcquire(closing_) && store_->SlotAlive();
    for (size_t i : taken) {
      if (mine) (void)store_->Release(ids[i]);
      buffers[i] = gismo_buffer_t{};
    }
    taken.clear();
  };
  // Tries every pending object once; keeps the ones still missing.
  std::vector<gismo_id_t> evicted;
  auto sweep = [&]() -> Status {
    std::lock_guard<std::mutex> op(op_mu_);
    if (Status s = CheckAlive(); !s.ok()) {
      release_taken();
      return s;
    }
    std::vector<size_t> still;
    const auto pending_id = [&](size_t j) -> const gismo_id_t& { return ids[pending[j]]; };
    for (size_t k = 0; k < pending.size(); ++k) {
      store_->PrefetchBatch(k, pending.size(), pending_id);
      const size_t i = pending[k];
      store::GetResult r;
      if (Status s = store_->TryGet(ids[i], &r); !s.ok()) {
        release_taken();
        return s;
      }
      if (r.found) {
        buffers[i] = r.buffer;
        taken.push_back(i);
        continue;
      }
      if (create != nullptr) {
        Status c = store_->Create(ids[i], create->data_size, create->metadata,
                                  create->metadata_size, create->flags, create->data);
        for (const gismo_id_t& e : store_->TakeEvicted()) evicted.push_back(e);
        if (c.ok()) continue;  // this client loads it: nothing to wait for
        if (c.code() != GISMO_ERR_OBJECT_EXISTS) return c;
      }
      still.push_back(i);
    }
    pending.swap(still);
    return Status();
  };
  // Notifies what the sweeps' creates evicted, outside op_mu_.
  auto notify_evicted = [&] {
    NotifyEvicted(std::move(evicted));
    evicted.clear();
  };
  for (size_t i = 0; i < count; ++i) {
    buffers[i] = gismo_buffer_t{};
    pending.push_back(i);
  }
  {
    Status s = sweep();
    notify_evicted();
    if (!s.ok()) return s;
  }
  if (pending.empty() || timeout_ms == 0) return Status();

  // One wait frame names every missing id; more than a frame may carry would
  // make the manager drop the connection (and the session with it).
  if (pending.size() > protocol::kMaxWaitIds) {
    std::lock_guard<std::mutex> op(op_mu_);
    release_taken();
    return Status(GISMO_ERR_LIMIT, std::to_string(pending.size()) +
                                       " of the objects are not sealed yet; a blocking get "
                                       "waits for at most " +
                                       std::to_string(protocol::kMaxWaitIds) +
                                       " at once: get them in smaller groups, or with timeout 0");
  }
  // Registered before each sweep (see NotifyIfWatched for why that order
  // misses no seal).
  const uint64_t wait_id = IncrementRelaxed(next_request_);
  uint64_t registered_epoch = ~0ull;
  uint64_t seen = 0;
  std::vector<gismo_id_t> waited;
  for (size_t i : pending) waited.push_back(ids[i]);
  Status result;
  for (;;) {
    if (Status refused = RegisterWait(wait_id, waited, &registered_epoch, deadline, &seen);
        !refused.ok()) {
      result = refused;
      std::lock_guard<std::mutex> op(op_mu_);
      release_taken();
      break;
    }
    Status swept = sweep();
    notify_evicted();
    if (!swept.ok()) {
      result = swept;
      break;
    }
    if (pending.empty()) break;
    std::unique_lock<std::mutex> lk(state_mu_);
    const auto until = WakeOrLookAgain(lk, deadline);
    bool woke = WaitOnState(lk, until, [&] { return wake_seq_ != seen || LoadAcquire(lost_); });
    if (LoadAcquire(lost_)) {
      result = Status(GISMO_ERR_CONNECTION,
                      "lost the connection to the manager while waiting (" + lost_reason_ + ")");
      lk.unlock();
      std::lock_guard<std::mutex> op(op_mu_);
      release_taken();
      break;
    }
    if (!woke && until == deadline) break;  // timed out; what is missing stays NULL
  }
  EndWait(wait_id);
  return result;
}

// Wait for a name's change: a registered wait on the name's watch id
// (store::NameWatchId), which every bind, swap and unbind of the name wakes
// after its commit (names.cc). The wait is registered (the manager raises the
// watch id's shard `waiters`, seq_cst, before its ack) before each look at
// the name, so a change committed before that look is seen by it, and one
// committed after it finds `waiters` raised and wakes us: no change is
// missed, and nothing polls. A binder that dies between its commit and its
// notice is recovered once fenced, and the manager then wakes every wait.
// Nothing here depends on sharing a kernel with the binder: the wake-up
// travels through the manager's connections.
Status ClientImpl::WaitName(std::string_view name, const gismo_id_t* known, int64_t timeout_ms,
                            store::NameBinding* out) {
  if (Status s = store::CheckName(name); !s.ok()) return s;
  const auto deadline = SteadyDeadline(timeout_ms, std::chrono::steady_clock::now());
  // True when the wait is over, with its outcome in *result.
  auto changed = [&](Status* result) {
    Status s = LookupName(name, out);
    if (s.ok()) {
      if (known != nullptr && std::memcmp(out->id.bytes, known->bytes, GISMO_ID_SIZE) == 0) {
        return false;
      }
      *result = Status();
      return true;
    }
    if (s.code() == GISMO_ERR_OBJECT_NOT_FOUND && known == nullptr) return false;
    if (s.code() == GISMO_ERR_OBJECT_NOT_FOUND) {
      s = Status(GISMO_ERR_OBJECT_NOT_FOUND, "name " + std::string(name) +
                                                 " is not bound any more (it was bound to " +
                                                 store::Hex(*known) + ")");
    }
    *result = s;
    return true;
  };
  auto timed_out = [&] {
    return Status(GISMO_ERR_TIMEOUT,
                  known != nullptr
                      ? "name " + std::string(name) + " still bound to " + store::Hex(*known) +
                            " at the deadline"
                      : "name " + std::string(name) + " still unbound at the deadline");
  };
  Status result;
  if (changed(&result)) return result;
  if (timeout_ms == 0) return timed_out();

  const std::vector<gismo_id_t> watch{store::NameWatchId(name)};
  const uint64_t wait_id = IncrementRelaxed(next_request_);
  uint64_t registered_epoch = ~0ull;
  uint64_t seen = 0;
  for (;;) {
    if (Status refused = RegisterWait(wait_id, watch, &registered_epoch, deadline, &seen);
        !refused.ok()) {
      result = refused;
      break;
    }
    if (changed(&result)) break;
    std::unique_lock<std::mutex> lk(state_mu_);
    const auto until = WakeOrLookAgain(lk, deadline);
    bool woke = WaitOnState(lk, until, [&] { return wake_seq_ != seen || LoadAcquire(lost_); });
    if (LoadAcquire(lost_)) {
      result = Status(GISMO_ERR_CONNECTION,
                      "lost the connection to the manager while waiting (" + lost_reason_ + ")");
      break;
    }
    if (!woke && until != deadline) continue;  // no manager: look again
    if (!woke) {
      lk.unlock();
      // The last look, so that a change at the deadline is not reported late.
      if (!changed(&result)) result = timed_out();
      break;
    }
  }
  EndWait(wait_id);
  return result;
}

}  // namespace gismo::client
