// The name operations: run in this client against the region's name table
// (store/names.h); no round trip to the manager.
#include "client/client.h"

namespace gismo::client {

Status ClientImpl::BindName(std::string_view name, const gismo_id_t& id, store::BindMode mode,
                            const gismo_id_t* expected) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return names_->Bind(name, id, mode, expected);
}

Status ClientImpl::UnbindName(std::string_view name, const gismo_id_t* expected) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return names_->Unbind(name, expected);
}

Status ClientImpl::LookupName(std::string_view name, store::NameBinding* out) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  return names_->Lookup(name, out);
}

Status ClientImpl::ListNames(std::string_view prefix, std::vector<store::NameBinding>* out) {
  std::lock_guard<std::mutex> op(op_mu_);
  if (Status s = CheckAlive(); !s.ok()) return s;
  out->clear();
  return names_->List(prefix, [out](const store::NameBinding& b) { out->push_back(b); });
}

}  // namespace gismo::client
