// The manager's Prometheus exporter: a minimal HTTP/1.1 server on the
// manager's own io_context that answers GET /metrics with the text
// exposition format (version 0.0.4).
//
// Why hand-written on asio rather than prometheus-cpp (Debian 12 does ship
// prometheus-cpp-dev 1.0.1): its pull exporter runs collection on the
// threads of an embedded civetweb server, while every read of the object
// index here must run on the manager's thread, because it uses the
// manager's client slot (slot 0), whose undo log and lock records the
// manager's own recovery transactions also use; two threads on one slot
// would corrupt that log. It would also add civetweb, libcurl and zlib to
// the daemon for a text format that takes a few lines to write.
#ifndef GISMO_MANAGER_METRICS_H_
#define GISMO_MANAGER_METRICS_H_

#include <asio.hpp>
#include <cstdint>
#include <functional>
#include <gismo/status.hpp>
#include <memory>
#include <string>

#include "manager/manager.h"
#include "protocol/wire.h"
#include "region/region.h"

namespace gismo::manager {

class MetricsExporter {
 public:
  // The exporter reads `region` as client slot `slot` with session
  // `session` (the manager's own), and `stats`. All three, and `io`, must
  // outlive it. Every handler runs on the thread that runs `io`, which must
  // be the only thread using that slot.
  MetricsExporter(asio::io_context& io, const region::Region& region, const ManagerStats& stats,
                  uint32_t slot, uint64_t session);
  ~MetricsExporter();
  MetricsExporter(const MetricsExporter&) = delete;
  MetricsExporter& operator=(const MetricsExporter&) = delete;

  // `address` parsed, INVALID_ARGUMENT unless it is "tcp:HOST:PORT" (the
  // only kind Listen serves on).
  static Result<protocol::Address> ParseAddress(const std::string& address);
  // Starts serving on "tcp:HOST:PORT" (port 0: any free port).
  Status Listen(const std::string& address);
  // The bound address, port resolved ("" before Listen succeeds).
  const std::string& address() const { return address_; }
  // Stops accepting; connections being served finish.
  void Close();

  // Produces the current metrics in the text exposition format and hands
  // them to `done` (on the thread that runs `io`). The index is counted a
  // slice of shards at a time, each slice a handler of `io`, so that the
  // manager's other work runs between slices; an index shard whose lock
  // stays busy is skipped and counted in gismo_metrics_skipped_shards.
  void RenderAsync(std::function<void(const std::string&)> done) const;
  // The connections it keeps as still reading their request: at most
  // kMaxConnections + 1 whatever the rate (on the thread that runs `io`).
  size_t reading_connections() const;

  class Connection;
  struct Connections;

 private:
  struct Scrape;
  void Accept();
  void Step(std::shared_ptr<Scrape> scrape) const;
  std::string RenderWith(const Scrape& scrape) const;

  asio::io_context& io_;
  const region::Region& region_;
  const ManagerStats& stats_;
  uint32_t slot_;
  uint64_t session_;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  // Connections being served, shared with each (they may outlive Close).
  std::shared_ptr<Connections> connections_;
  asio::steady_timer retry_;  // the wait after a failed accept
  std::string address_;
};

}  // namespace gismo::manager

#endif  // GISMO_MANAGER_METRICS_H_
