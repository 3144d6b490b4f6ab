#include "manager/metrics.h"

#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string_view>

#include "common/atomic.h"
#include "common/clock.h"
#include "manager/listen.h"
#include "protocol/wire.h"
#include "store/allocator.h"
#include "store/store.h"
#include "store/txn.h"

namespace gismo::manager {

// What a scrape counted in the object index so far (outside the anonymous
// namespace: MetricsExporter::Scrape holds one).
struct IndexScan {
  std::array<uint64_t, 4> objects{};  // by region::ObjectState
  std::array<uint64_t, 4> bytes{};    // data + metadata, as requested
  uint32_t skipped_shards = 0;
};

namespace {

// How long a scrape spins for one index shard's lock before skipping that
// shard. Bounded so that a client frozen (or dead, not yet recovered)
// inside a shard cannot stall the manager's thread.
constexpr uint64_t kShardLockWaitNs = 200 * 1000;
// Index shards a scrape counts before it lets the manager's thread do other
// work (1/64 of a 1024-shard index: about 0.2 ms at 1 M objects here, once
// the index is in memory), so that a scrape of a large index delays no
// heartbeat, lease or wake-up by more than that.
constexpr uint32_t kShardsPerSlice = 16;
// A request must arrive whole within this time and size.
constexpr auto kRequestTimeout = std::chrono::seconds(10);
// Scrapers served at once, so that a flood of connections holds no more of
// the manager's descriptors (which its clients' pidfds and fence commands
// need) than this. One more closes the oldest that has not sent its whole
// request yet (a slow or silent peer must not keep real scrapers out), or,
// if every one is being answered, is answered 503 and closed.
constexpr int kMaxConnections = 16;
// After its reply: how long a connection waits for the peer to close, its
// unread input read and dropped (closing with input unread resets the
// connection, which can lose the reply on its way).
constexpr auto kLinger = std::chrono::seconds(1);
// After a failed accept (out of descriptors): the acceptor waits this long
// before it accepts again, never spinning the manager's loop.
constexpr auto kAcceptRetry = std::chrono::milliseconds(50);
constexpr size_t kMaxRequestBytes = 16 * 1024;

std::string EscapeLabel(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatDouble(double v) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// Builds the text exposition: every family is announced once (HELP, TYPE)
// before its samples.
class Exposition {
 public:
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void Sample(std::string_view name, std::string_view labels, const std::string& value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void Sample(std::string_view name, std::string_view labels, uint64_t value) {
    Sample(name, labels, std::to_string(value));
  }
  void Sample(std::string_view name, std::string_view labels, double value) {
    Sample(name, labels, FormatDouble(value));
  }
  // One family with a single unlabelled sample.
  template <typename T>
  void One(std::string_view name, std::string_view type, std::string_view help, T value) {
    Family(name, type, help);
    Sample(name, {}, value);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Counts the live records of shards *next.. under each one's lock, as
// client `slot`, kShardsPerSlice of them at most; true once the last shard
// is counted.
bool ScanIndexSlice(const region::Region& r, uint32_t slot, uint64_t session, uint32_t* next,
                    IndexScan* out) {
  IndexScan& scan = *out;
  const uint32_t end = std::min(r.num_shards(), *next + kShardsPerSlice);
  for (uint32_t s = *next; s < end; ++s) {
    store::Txn txn(r, slot, session, region::OpKind::kNone);
    txn.SetLockWait(kShardLockWaitNs);
    if (!txn.Lock(r.shard(s).lock)) {  // nothing was logged: the destructor just unwinds
      ++scan.skipped_shards;
      continue;
    }
    const region::ObjectRecord* recs = r.records(s);
    uint64_t used = std::min<uint64_t>(r.shard(s).next_unused.load(std::memory_order_relaxed),
                                       r.records_per_shard());
    for (uint64_t i = 0; i < used; ++i) {
      uint64_t info = recs[i].info.load(std::memory_order_relaxed);
      auto state = static_cast<size_t>(region::InfoState(info));
      if (state == 0 || state >= scan.objects.size()) continue;  // free record
      gismo_object_info_t oi;
      store::FillInfo(recs[i], &oi);
      ++scan.objects[state];
      scan.bytes[state] += oi.data_size + oi.metadata_size;
    }
    (void)txn.Commit();  // read-only: nothing to fail
  }
  *next = end;
  return end == r.num_shards();
}

// The end of a request's head: an empty line, its line ends CRLF or a bare
// LF (RFC 9112 lets a server take a bare LF as a line end).
struct HeadEnd {
  template <typename It>
  std::pair<It, bool> operator()(It begin, It end) const {
    for (It i = begin; i != end; ++i) {
      if (*i != '\n') continue;
      It j = i;
      if (++j != end && *j == '\r') ++j;
      if (j != end && *j == '\n') return {++j, true};
    }
    return {begin, false};
  }
};

}  // namespace
}  // namespace gismo::manager

template <>
struct asio::is_match_condition<gismo::manager::HeadEnd> : std::true_type {};

namespace gismo::manager {

// What the exporter's connections share (they may outlive the exporter):
// how many are alive, and those still reading their request, oldest first.
struct MetricsExporter::Connections {
  int live = 0;
  std::deque<std::weak_ptr<Connection>> reading;
  // Closes the oldest connection still reading its request; false if none is.
  bool CloseOldestReading();
  // Drops every entry that read its request or is gone, so that `reading`
  // holds only live connections still reading (at most kMaxConnections + 1).
  // Only the front was pruned: behind one slow request, each connection
  // served meanwhile left an entry, which kept its whole Connection's memory
  // (made with make_shared) until the slow one ended.
  void Prune();
};

class MetricsExporter::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(const MetricsExporter& exporter, asio::ip::tcp::socket sock,
             std::shared_ptr<Connections> all)
      : exporter_(exporter),
        sock_(std::move(sock)),
        timer_(sock_.get_executor()),
        all_(std::move(all)) {
    ++all_->live;
  }
  ~Connection() { --all_->live; }

  void Start() {
    auto self = shared_from_this();
    if (all_->live > kMaxConnections && !all_->CloseOldestReading()) {
      // Closed as soon as it is written, never lingering: refusals hold no
      // descriptor past their write, whatever their rate.
      return Reply("503 Service Unavailable", "text/plain; charset=utf-8",
                   "too many metrics connections at once; try again\n", true, /*linger=*/false);
    }
    reading_ = true;
    all_->Prune();
    all_->reading.push_back(self);
    timer_.expires_after(kRequestTimeout);
    timer_.async_wait([self](asio::error_code ec) {
      if (!ec) self->Close();
    });
    asio::async_read_until(sock_, asio::dynamic_buffer(in_, kMaxRequestBytes), HeadEnd(),
                           [self](asio::error_code ec, size_t) {
                             self->reading_ = false;
                             if (ec == asio::error::not_found) {  // kMaxRequestBytes, no end
                               return self->Reply("431 Request Header Fields Too Large",
                                                  "text/plain; charset=utf-8",
                                                  "the request's head is over 16 KiB\n", true);
                             }
                             if (ec) return self->Close();
                             self->Respond();
                           });
  }

  bool reading() const { return reading_; }

  void Close() {
    reading_ = false;
    asio::error_code ec;
    timer_.cancel();
    sock_.shutdown(asio::socket_base::shutdown_both, ec);
    sock_.close(ec);
  }

 private:
  void Respond() {
    // Request line: METHOD SP TARGET SP VERSION.
    std::string_view line(in_);
    line = line.substr(0, line.find('\n'));
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) {
      return Reply("400 Bad Request", "text/plain; charset=utf-8", "malformed request\n", true);
    }
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    target = target.substr(0, target.find('?'));
    bool head = method == "HEAD";
    if (method != "GET" && !head) {
      return Reply("405 Method Not Allowed", "text/plain; charset=utf-8",
                   "only GET and HEAD are supported\n", true);
    }
    if (target == "/metrics") {
      auto self = shared_from_this();
      return exporter_.RenderAsync([self, head](const std::string& body) {
        self->Reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", body, !head);
      });
    }
    if (target == "/") {
      return Reply("200 OK", "text/plain; charset=utf-8",
                   "gismo-manager: metrics are at /metrics\n", !head);
    }
    Reply("404 Not Found", "text/plain; charset=utf-8", "not found; try /metrics\n", !head);
  }

  void Reply(std::string_view status, std::string_view type, const std::string& body,
             bool with_body, bool linger = true) {
    out_ = "HTTP/1.1 ";
    out_ += status;
    out_ += "\r\nContent-Type: ";
    out_ += type;
    out_ += "\r\nContent-Length: " + std::to_string(body.size());
    if (status.rfind("405", 0) == 0) out_ += "\r\nAllow: GET, HEAD";
    out_ += "\r\nConnection: close\r\n\r\n";
    if (with_body) out_ += body;
    auto self = shared_from_this();
    asio::async_write(sock_, asio::buffer(out_), [self, linger](asio::error_code ec, size_t) {
      if (ec || !linger) return self->Close();
      self->Linger();
    });
  }

  // The reply is sent: the write side ends, and input is read and dropped
  // until the peer closes (or kLinger passes), so that the close sends no
  // reset that could overtake the reply.
  void Linger() {
    asio::error_code ec;
    sock_.shutdown(asio::socket_base::shutdown_send, ec);
    auto self = shared_from_this();
    timer_.cancel();
    timer_.expires_after(kLinger);
    timer_.async_wait([self](asio::error_code e) {
      if (!e) self->Close();
    });
    Drain();
  }
  void Drain() {
    auto self = shared_from_this();
    sock_.async_read_some(asio::buffer(scratch_), [self](asio::error_code ec, size_t) {
      if (ec) return self->Close();
      self->Drain();
    });
  }

  const MetricsExporter& exporter_;
  asio::ip::tcp::socket sock_;
  asio::steady_timer timer_;
  std::shared_ptr<Connections> all_;
  bool reading_ = false;  // its request is not read whole yet
  std::string in_, out_;
  std::array<char, 4096> scratch_;
};

void MetricsExporter::Connections::Prune() {
  std::erase_if(reading, [](const std::weak_ptr<Connection>& entry) {
    const std::shared_ptr<Connection> c = entry.lock();
    return !c || !c->reading();
  });
}

size_t MetricsExporter::reading_connections() const { return connections_->reading.size(); }

bool MetricsExporter::Connections::CloseOldestReading() {
  Prune();  // the front, if any, is alive and reading
  if (reading.empty()) return false;
  std::shared_ptr<Connection> c = reading.front().lock();
  reading.pop_front();
  c->Close();
  return true;
}

MetricsExporter::MetricsExporter(asio::io_context& io, const region::Region& region,
                                 const ManagerStats& stats, uint32_t slot, uint64_t session)
    : io_(io),
      region_(region),
      stats_(stats),
      slot_(slot),
      session_(session),
      connections_(std::make_shared<Connections>()),
      retry_(io) {}

MetricsExporter::~MetricsExporter() { Close(); }

Result<protocol::Address> MetricsExporter::ParseAddress(const std::string& address) {
  auto a = protocol::ParseAddress(address);
  if (!a.ok()) return a.status();
  if (a->kind != protocol::Address::Kind::kTcp) {
    return Status(GISMO_ERR_INVALID_ARGUMENT,
                  "metrics address must be tcp:HOST:PORT, got '" + address + "'");
  }
  return a;
}

Status MetricsExporter::Listen(const std::string& address) {
  auto a = ParseAddress(address);
  if (!a.ok()) return a.status();
  try {
    protocol::Address bound;
    auto acc = ListenTcp(io_, *a, &bound);
    if (!acc.ok()) return acc.status();
    address_ = bound.ToString();
    acceptor_ = std::move(*acc);
  } catch (const std::system_error& e) {
    return Status(GISMO_ERR_IO, "cannot serve metrics on " + address + ": " + e.what());
  }
  Accept();
  spdlog::info("serving metrics at http://{}:{}/metrics", a->host,
               acceptor_->local_endpoint().port());
  return Status();
}

void MetricsExporter::Close() {
  if (!acceptor_) return;
  asio::error_code ec;
  acceptor_->close(ec);
  retry_.cancel();
}

void MetricsExporter::Accept() {
  acceptor_->async_accept([this](asio::error_code ec, asio::ip::tcp::socket sock) {
    if (ec == asio::error::operation_aborted || !acceptor_->is_open()) return;
    if (!ec) {
      std::make_shared<Connection>(*this, std::move(sock), connections_)->Start();
      return Accept();
    }
    spdlog::warn("metrics: accept: {}", ec.message());
    retry_.expires_after(kAcceptRetry);
    retry_.async_wait([this](asio::error_code e) {
      if (!e && acceptor_->is_open()) Accept();
    });
  });
}

struct MetricsExporter::Scrape {
  uint64_t busy_ns = 0;  // spent counting the index so far
  uint32_t next_shard = 0;
  IndexScan scan;
  std::function<void(const std::string&)> done;
};

void MetricsExporter::RenderAsync(std::function<void(const std::string&)> done) const {
  auto scrape = std::make_shared<Scrape>();
  scrape->done = std::move(done);
  Step(std::move(scrape));
}

void MetricsExporter::Step(std::shared_ptr<Scrape> scrape) const {
  const uint64_t start = MonotonicNs();
  const bool counted = ScanIndexSlice(region_, slot_, session_, &scrape->next_shard, &scrape->scan);
  scrape->busy_ns += MonotonicNs() - start;
  if (!counted) {
    asio::post(io_, [this, scrape = std::move(scrape)]() mutable { Step(std::move(scrape)); });
    return;
  }
  scrape->done(RenderWith(*scrape));
}

std::string MetricsExporter::RenderWith(const Scrape& scrape) const {
  const uint64_t t0 = MonotonicNs();
  const IndexScan& scan = scrape.scan;
  const region::Superblock& sb = region_.sb();
  const region::Superblock& fixed = region_.fixed();
  Exposition x;

  x.Family("gismo_info", "gauge",
           "Constant 1; labels give the library version and the region's format.");
  x.Sample("gismo_info",
           "version=\"" + EscapeLabel(gismo_version()) + "\",format_version=\"" +
               std::to_string(fixed.format_version) + "\",coherence=\"" +
               region::CoherenceModeName(fixed.coherence_mode) + "\",region=\"" +
               EscapeLabel(region_.path()) + "\"",
           uint64_t{1});

  // Objects, from the index.
  // Index 0 (a free record) is never counted.
  auto state_label = [](size_t state) {
    return std::string("state=\"") + gismo_state_name(static_cast<gismo_object_state_t>(state)) +
           "\"";
  };
  x.Family("gismo_objects", "gauge", "Objects in the store by state.");
  for (size_t s = 1; s < scan.objects.size(); ++s) {
    x.Sample("gismo_objects", state_label(s), scan.objects[s]);
  }
  x.Family("gismo_object_bytes", "gauge",
           "Data plus metadata bytes of the objects in each state, as requested (before "
           "allocator rounding).");
  for (size_t s = 1; s < scan.bytes.size(); ++s) {
    x.Sample("gismo_object_bytes", state_label(s), scan.bytes[s]);
  }
  x.One("gismo_object_index_capacity", "gauge", "Objects the index can hold.",
        uint64_t{fixed.max_objects});
  x.One("gismo_metrics_skipped_shards", "gauge",
        "Index shards left out of this scrape because their lock stayed busy (object counts "
        "are then a lower bound).",
        uint64_t{scan.skipped_shards});

  // Heap.
  store::HeapStats hs = store::Allocator(region_).Stats();
  x.One("gismo_heap_capacity_bytes", "gauge", "Heap bytes objects can use.", hs.capacity_bytes);
  x.One("gismo_heap_used_bytes", "gauge", "Heap bytes allocated to objects (whole pages).",
        hs.used_bytes);
  x.One("gismo_heap_free_bytes", "gauge", "Heap bytes not allocated.", hs.free_bytes);
  x.One("gismo_heap_largest_free_bytes", "gauge",
        "Largest contiguous free run: the largest object that fits now.", hs.largest_free_bytes);
  x.One("gismo_region_size_bytes", "gauge", "Size of the shared region.", region_.size());

  // Eviction (exact: each shard's counters change in the evicting Txn).
  uint64_t evictions = 0, evicted_bytes = 0;
  for (uint32_t s = 0; s < region_.num_shards(); ++s) {
    evictions += region_.shard(s).evictions.load(std::memory_order_relaxed);
    evicted_bytes += region_.shard(s).evicted_bytes.load(std::memory_order_relaxed);
  }
  x.One("gismo_evictions_total", "counter",
        "Evictable objects evicted to make room (over the region's life).", evictions);
  x.One("gismo_evicted_bytes_total", "counter", "Bytes (as allocated) of the evicted objects.",
        evicted_bytes);

  // Clients.
  std::map<uint32_t, uint64_t> per_node;
  uint64_t clients = 0;
  store::Store(region_, slot_, session_, 0).ForEachClient([&](const gismo_client_info_t& c) {
    ++per_node[c.node];
    ++clients;
  });
  x.Family("gismo_clients", "gauge", "Connected clients by node.");
  for (const auto& [node, n] : per_node) {
    x.Sample("gismo_clients", "node=\"" + std::to_string(node) + "\"", n);
  }
  x.One("gismo_clients_connected", "gauge", "Connected clients on all nodes.", clients);
  // A non-coherent region's owner threads past the first each run in a
  // client slot of their own (doc/noncoherent.md 9.3): not a client's.
  const uint64_t helpers = region::OwnerHelperSlots(region_).size();
  x.One("gismo_client_slots", "gauge", "Client slots of the region (clients at most).",
        uint64_t{region::SlotsForClients(region_, helpers)});
  x.One("gismo_owner_threads", "gauge",
        "Threads applying a non-coherent region's requests (0: a coherent region).",
        region_.noncoherent() ? 1 + helpers : 0);

  // Manager activity.
  x.One("gismo_manager_clients_joined_total", "counter", "Clients registered.",
        LoadRelaxed(stats_.clients_joined));
  x.One("gismo_manager_clients_left_total", "counter", "Clients that disconnected cleanly.",
        LoadRelaxed(stats_.clients_left));
  x.One("gismo_manager_clients_recovered_total", "counter",
        "Clients that went away without disconnecting and were recovered once fenced.",
        LoadRelaxed(stats_.clients_recovered));
  x.One("gismo_manager_leases_expired_total", "counter",
        "Clients suspected because nothing was heard from them for a lease.",
        LoadRelaxed(stats_.leases_expired));
  x.One("gismo_manager_clients_suspected_total", "counter",
        "Clients suspected dead (lease expired, or gone without re-attaching); nothing of "
        "theirs is touched until they are fenced.",
        LoadRelaxed(stats_.clients_suspected));
  x.One("gismo_manager_clients_fenced_total", "counter",
        "Suspected clients proven unable to run again (then recovered).",
        LoadRelaxed(stats_.clients_fenced));
  x.One("gismo_manager_clients_reattached_total", "counter",
        "Clients that re-attached after their connection (or the manager) was lost.",
        LoadRelaxed(stats_.clients_reattached));
  x.One("gismo_manager_nodes_fenced_total", "counter",
        "Whole nodes fenced (fence command or operator).", LoadRelaxed(stats_.nodes_fenced));
  x.One("gismo_manager_bad_frame_tags_total", "counter",
        "Keyed connections closed at a frame whose cluster-key tag was missing or wrong "
        "(forged, or changed on the way).",
        LoadRelaxed(stats_.bad_frame_tags));
  x.One("gismo_manager_wakeups_sent_total", "counter",
        "Wake-ups sent to clients waiting for an object to be sealed.",
        LoadRelaxed(stats_.wakeups_sent));
  x.One("gismo_manager_recovery_seconds_total", "counter",
        "Time spent recovering client slots (clean departures included).",
        static_cast<double>(LoadRelaxed(stats_.recovery_ns_total)) / 1e9);
  x.One("gismo_manager_waiters", "gauge", "Registered blocking gets (seal waits).",
        sb.waiters.load(std::memory_order_relaxed));
  x.One("gismo_manager_subscribers", "gauge", "Live event subscriptions.",
        sb.subscribers.load(std::memory_order_relaxed));
  x.One("gismo_manager_epoch", "gauge", "Manager starts on this region so far.",
        sb.manager_epoch.load(std::memory_order_relaxed));
  uint64_t start_ns = sb.manager_start_time_ns.load(std::memory_order_relaxed);
  uint64_t now_ns = RealtimeNs();
  x.One("gismo_manager_start_time_seconds", "gauge",
        "When this manager started, in seconds since the Unix epoch.",
        static_cast<double>(start_ns) / 1e9);
  x.One("gismo_manager_uptime_seconds", "gauge", "Seconds since this manager started.",
        static_cast<double>(now_ns > start_ns ? now_ns - start_ns : 0) / 1e9);
  x.One("gismo_metrics_scrape_duration_seconds", "gauge",
        "Time the manager's thread spent producing these metrics (its other work between "
        "the slices of the index count not included).",
        static_cast<double>(scrape.busy_ns + (MonotonicNs() - t0)) / 1e9);
  return x.Take();
}

}  // namespace gismo::manager
