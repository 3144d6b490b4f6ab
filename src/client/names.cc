// The name operations: run in this client against the region's name table
// (store/names.h); no round trip to the manager, except to wake the clients
// that wait for a name's change (gismo_wait_name, see waits.cc).
#include "client/client.h"

namespace gismo::client {

using protocol::MsgType;

Status ClientImpl::BindName(std::string_view name, const gismo_id_t& id, store::BindMode mode,
                            const gismo_id_t* expected) {
  {
    std::lock_guard<std::mutex> op(op_mu_);
    if (Status s = CheckAlive(); !s.ok()) return s;
    if (Status s = store_->noncoherent() ? store_->nc().BindName(name, id, mode, expected)
                                         : names_->Bind(name, id, mode, expected);
        !s.ok()) {
      return s;
    }
  }
  // After the commit, like a seal: a waiter registered before this sees
  // the change in its re-check or is woken (store::NameWatchId).
  NotifyIfWatched(MsgType::kSealed, store::NameWatchId(name), /*ring_event=*/false);
  return Status();
}

Status ClientImpl::UnbindName(std::string_view name, const gismo_id_t* expected) {
  {
    std::lock_guard<std::mutex> op(op_mu_);
    if (Status s = CheckAlive(); !s.ok()) return s;
    if (Status s = store_->noncoherent() ? store_->nc().UnbindName(name, expected)
                                         : names_->Unbind(name, expected);
        !s.ok()) {
      return s;
    }
  }
  NotifyIfWatched(MsgType::kSealed, store::NameWatchId(name), /*ring_event=*/false);
  return Status();
}

Status ClientImpl::LookupName(std::string_view name, store::NameBinding* out) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  if (store_->noncoherent()) return store_->nc().LookupName(name, out);
  return names_->Lookup(name, out);
}

Status ClientImpl::ListNames(std::string_view prefix, std::vector<store::NameBinding>* out) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  out->clear();
  auto add = [out](const store::NameBinding& b) { out->push_back(b); };
  if (store_->noncoherent()) return store_->nc().ListNames(prefix, add);
  return names_->List(prefix, add);
}

}  // namespace gismo::client
