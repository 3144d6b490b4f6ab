// Listening sockets for the manager's endpoints (clients, metrics).
#ifndef GISMO_MANAGER_LISTEN_H_
#define GISMO_MANAGER_LISTEN_H_

#include <asio.hpp>
#include <gismo/status.hpp>
#include <memory>
#include <string>

#include "protocol/wire.h"

namespace gismo::manager {

// A listening TCP acceptor on `a` (port 0: a free port); `bound` receives
// the address actually bound. Throws std::system_error like asio does.
inline Result<std::unique_ptr<asio::ip::tcp::acceptor>> ListenTcp(asio::io_context& io,
                                                                  const protocol::Address& a,
                                                                  protocol::Address* bound) {
  asio::ip::tcp::resolver resolver(io);
  auto results = resolver.resolve(a.host, std::to_string(a.port));
  if (results.empty()) return Status(GISMO_ERR_INVALID_ARGUMENT, "cannot resolve " + a.host);
  asio::ip::tcp::endpoint ep = *results.begin();
  auto acc = std::make_unique<asio::ip::tcp::acceptor>(io);
  acc->open(ep.protocol());
  acc->set_option(asio::socket_base::reuse_address(true));
  acc->bind(ep);
  acc->listen();
  *bound = a;
  bound->port = acc->local_endpoint().port();
  return acc;
}

}  // namespace gismo::manager

#endif  // GISMO_MANAGER_LISTEN_H_
