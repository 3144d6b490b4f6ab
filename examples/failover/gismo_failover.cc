// gismo_failover: a stream job that fails over through a checkpoint set
// (examples/failover/run.sh drives it on an emulated cluster).
//
//   gismo_failover active   --set S [job options] [--hang-in-checkpoint G] --out FILE
//   gismo_failover standby  --set S [job options] --out FILE
//   gismo_failover serve    --set S --port P              (a surviving peer)
//   gismo_failover compare  --set S --peer HOST:PORT --file PATH
//   gismo_failover drop     --set S
//   job options: --events N --every K --symbols S --history H --window W --chunk-mib C
//
// The job: trade monitoring. A deterministic generator makes event i (a
// trade: symbol, price, quantity; event time i ms) from (seed, i) alone.
// The job keeps, per symbol, the open window's aggregate (trades, volume,
// notional, high, low) and a ring of the last H closed windows with running
// sums, and at each window's close (every W events) emits one line: the
// window, its trades and volume, the most traded symbol, how many symbols'
// volume was more than 3 standard deviations above their own history, and
// an XXH64 of every symbol's aggregate. The whole state is one flat byte
// array (a header, then the arrays), so a checkpoint is that array cut into
// chunks, and a restore copies the chunks back: S = 2048, H = 2048 is
// 128 MiB.
//
// Every K events the job checkpoints its state into the set S
// (gismo::checkpoint::Writer: chunks, then the manifest, published by a
// compare-and-swap of the name S; the manifest's metadata is the stream
// offset). Restarted, it restores the newest checkpoint and goes on from its
// offset, so its output from there equals that of a run without failure.
//
// Fail-over: the active holds an object created GISMO_CREATE_OWNED (its
// "token"). The manager deletes a client's owned objects only when it
// recovers the client, which it does only once the client is fenced (proven
// unable to run again), and every delete is notified to subscribers on every
// node. So the standby, subscribed, takes over exactly when the token's
// delete arrives: never while the active is merely suspected. Meanwhile it
// follows the checkpoints with gismo_wait_name (no polling). Should the old
// active run again anyway, its next publish loses the name's
// compare-and-swap (GISMO_ERR_CONFLICT) and it stops.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <gismo/checkpoint.hpp>
#include <gismo/gismo.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using gismo::Client;
using gismo::ObjectId;
using gismo::Status;

struct Options {
  std::string role;
  std::string set = "trades/state";
  uint64_t events = 20'000'000;
  uint64_t every = 2'000'000;
  uint32_t symbols = 2048;
  uint32_t history = 2048;
  uint64_t window = 50'000;
  uint64_t chunk_mib = 16;
  uint64_t hang_in = 0;  // generation whose checkpoint stops half-way (0: none)
  uint64_t seed = 0x7261646573ull;
  std::string out;
  int port = 0;
  std::string peer;
  std::string file;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double Mib(uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }
uint64_t RealtimeNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

[[noreturn]] void Die(const std::string& what, const Status& s = Status()) {
  std::fprintf(stderr, "gismo_failover: %s%s%s\n", what.c_str(), s.ok() ? "" : ": ",
               s.ok() ? "" : s.ToString().c_str());
  std::exit(1);
}

void Say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void Say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  std::fflush(stdout);
}

// ---- the job's state: one flat array ---------------------------------------

struct Header {
  uint64_t magic;
  uint64_t offset;  // next event to process
  uint64_t symbols, history, window, seed;
  uint64_t reserved[2];
};
static_assert(sizeof(Header) == 64);
constexpr uint64_t kMagic = 0x31564f4c49414647ull;  // "GFAILOV1"

struct Agg {  // one symbol in one window
  double volume;
  double notional;
  float high;
  float low;
  uint32_t trades;
  uint32_t pad;
};
static_assert(sizeof(Agg) == 32);

constexpr Agg kEmpty{0, 0, 0, INFINITY, 0, 0};

struct Stats {  // one symbol's history ring
  double sum;
  double sumsq;
  uint32_t len;
  uint32_t head;
  uint64_t pad;
};
static_assert(sizeof(Stats) == 32);

class State {
 public:
  explicit State(const Options& o)
      : bytes_(sizeof(Header) + uint64_t{o.symbols} * (sizeof(Agg) + sizeof(Stats)) +
               uint64_t{o.symbols} * o.history * sizeof(Agg)) {
    // Committed now (a standby reserves its memory before it is needed).
    buf_.assign(bytes_ / 8 + 1, 0);
    Header* h = header();
    h->magic = kMagic;
    h->symbols = o.symbols;
    h->history = o.history;
    h->window = o.window;
    h->seed = o.seed;
    for (uint32_t s = 0; s < o.symbols; ++s) open()[s] = kEmpty;
  }
  uint8_t* data() { return reinterpret_cast<uint8_t*>(buf_.data()); }
  uint64_t size() const { return bytes_; }
  Header* header() { return reinterpret_cast<Header*>(data()); }
  Agg* open() { return reinterpret_cast<Agg*>(data() + sizeof(Header)); }
  Stats* stats() { return reinterpret_cast<Stats*>(open() + header()->symbols); }
  Agg* ring(uint32_t sym) {
    return reinterpret_cast<Agg*>(stats() + header()->symbols) + uint64_t{sym} * header()->history;
  }
  // Checks a restored state against the job's options.
  bool Matches(const Options& o) {
    const Header* h = header();
    return h->magic == kMagic && h->symbols == o.symbols && h->history == o.history &&
           h->window == o.window && h->seed == o.seed;
  }

 private:
  uint64_t bytes_;
  std::vector<uint64_t> buf_;
};

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct Trade {
  uint32_t symbol;
  float price;
  uint32_t qty;
};

// Event i of the stream, from (seed, i) alone. Symbols are skewed (a few
// are traded far more than the rest) and every 97th window a few symbols
// burst, which the job flags.
Trade Event(const Options& o, uint64_t i) {
  const uint64_t r = Mix(o.seed ^ Mix(i));
  const uint64_t a = r % o.symbols, b = (r >> 16) % o.symbols;
  Trade t;
  t.symbol = static_cast<uint32_t>(a * b / o.symbols);
  const uint64_t w = i / o.window;
  if (w % 97 == 13 && (r >> 60) < 4)
    t.symbol = static_cast<uint32_t>((w * 7 + (r >> 56) % 3) % o.symbols);
  const float base = 10.0f + static_cast<float>(t.symbol % 500);
  t.price = base * (1.0f + (static_cast<float>((r >> 24) % 2001) - 1000.0f) * 1e-5f);
  t.qty = 1 + static_cast<uint32_t>((r >> 40) % 500);
  return t;
}

// Closes the open window: the output line, then the history rings.
void CloseWindow(State& st, uint64_t w, FILE* out) {
  const Header* h = st.header();
  const uint32_t n = static_cast<uint32_t>(h->symbols);
  Agg* open = st.open();
  Stats* stats = st.stats();
  uint64_t trades = 0, alerts = 0;
  double volume = 0, top_volume = -1;
  uint32_t top = 0;
  XXH64_state_t* digest = XXH64_createState();
  XXH64_reset(digest, w);
  for (uint32_t s = 0; s < n; ++s) {
    Agg& a = open[s];
    Stats& hs = stats[s];
    trades += a.trades;
    volume += a.volume;
    if (a.volume > top_volume) top_volume = a.volume, top = s;
    if (hs.len >= 8) {
      const double mean = hs.sum / hs.len;
      const double var = std::max(0.0, hs.sumsq / hs.len - mean * mean);
      if (a.volume > mean + 3 * std::sqrt(var) + 1) ++alerts;
    }
    XXH64_update(digest, &a, sizeof a);
    // Into the ring; the oldest window leaves the running sums.
    Agg* ring = st.ring(s);
    if (hs.len == h->history) {
      const Agg& old = ring[hs.head];
      hs.sum -= old.volume;
      hs.sumsq -= old.volume * old.volume;
    } else {
      ++hs.len;
    }
    ring[hs.head] = a;
    hs.head = static_cast<uint32_t>((hs.head + 1) % h->history);
    hs.sum += a.volume;
    hs.sumsq += a.volume * a.volume;
    a = kEmpty;
  }
  std::fprintf(out,
               "w=%08" PRIu64 " trades=%" PRIu64 " volume=%.0f top=S%04u:%.0f alerts=%" PRIu64
               " digest=%016llx\n",
               w, trades, volume, top, top_volume, alerts,
               static_cast<unsigned long long>(XXH64_digest(digest)));
  XXH64_freeState(digest);
}

void Process(State& st, const Options& o, uint64_t end, FILE* out) {
  Header* h = st.header();
  Agg* open = st.open();
  for (uint64_t i = h->offset; i < end; ++i) {
    if (i > 0 && i % o.window == 0) CloseWindow(st, i / o.window - 1, out);
    const Trade t = Event(o, i);
    Agg& a = open[t.symbol];
    a.volume += t.qty;
    a.notional += static_cast<double>(t.price) * t.qty;
    a.high = std::max(a.high, t.price);
    a.low = std::min(a.low, t.price);
    ++a.trades;
  }
  h->offset = end;
}

// ---- checkpoints --------------------------------------------------------------

// One checkpoint of the state. With `hang`, stops for good after half the
// chunks (a node that dies in the middle of a checkpoint).
void Checkpoint(Client& c, State& st, const Options& o, bool hang) {
  auto w = gismo::checkpoint::Writer::Begin(c, o.set);
  if (!w.ok()) Die("checkpoint begin", w.status());
  const uint64_t chunk = o.chunk_mib << 20;
  const uint64_t nchunks = (st.size() + chunk - 1) / chunk;
  for (uint64_t k = 0; k < nchunks; ++k) {
    if (hang && k == nchunks / 2) {
      Say("active: checkpoint %" PRIu64 " at offset %" PRIu64 ": %" PRIu64 " of %" PRIu64
          " chunks written, stopping here (mid-checkpoint)\n",
          w->generation(), st.header()->offset, k, nchunks);
      for (;;) pause();
    }
    const uint64_t at = k * chunk, n = std::min(chunk, st.size() - at);
    if (Status s = w->AddChunk({st.data() + at, n}); !s.ok()) Die("checkpoint chunk", s);
  }
  const uint64_t gen = w->generation();
  Status s = w->Commit("offset=" + std::to_string(st.header()->offset));
  if (s.code() == GISMO_ERR_CONFLICT) {
    // Someone took over: this writer is stale and stops.
    Die("checkpoint " + std::to_string(gen) + " lost its publish (another writer took over)", s);
  }
  if (!s.ok()) Die("checkpoint commit", s);
}

struct Restored {
  uint64_t generation = 0;
  uint64_t offset = 0;
};

// Restores the newest checkpoint into `st` (by pointer, checksums verified,
// then copied into the job's memory). found false if none was published.
bool Restore(Client& c, State& st, const Options& o, Restored* out) {
  auto r = gismo::checkpoint::Restore(c, o.set);
  if (!r.ok() && r.status().code() == GISMO_ERR_OBJECT_NOT_FOUND) return false;
  if (!r.ok()) Die("restore", r.status());
  uint64_t at = 0;
  for (const gismo::Buffer& b : r->chunks) {
    if (at + b.size() > st.size()) Die("restore: the checkpoint is larger than the state");
    std::memcpy(st.data() + at, b.data(), b.size());
    at += b.size();
  }
  if (at != st.size() || !st.Matches(o)) {
    Die("restore: the checkpoint is of another job (symbols, history, window or seed differ)");
  }
  out->generation = r->generation;
  out->offset = st.header()->offset;
  return true;
}

// Runs the job from the newest checkpoint (or from 0) to the end of the
// stream, checkpointing every `every` events.
void RunJob(Client& c, State& st, const Options& o, const char* who, FILE* out) {
  while (st.header()->offset < o.events) {
    const uint64_t next = std::min(o.events, (st.header()->offset / o.every + 1) * o.every);
    Process(st, o, next, out);
    std::fflush(out);
    if (next % o.every == 0) {
      Checkpoint(c, st, o, o.hang_in != 0 && next / o.every == o.hang_in);
      Say("%s: checkpoint at offset %" PRIu64 " published\n", who, next);
    }
  }
  // The end: the last window and a digest of the whole state.
  CloseWindow(st, (o.events - 1) / o.window, out);
  std::fprintf(out, "end offset=%" PRIu64 " state=%016llx\n", o.events,
               static_cast<unsigned long long>(XXH64(st.data(), st.size(), 0)));
  std::fflush(out);
}

FILE* OpenOut(const Options& o) {
  if (o.out.empty()) Die("--out FILE is required");
  FILE* f = std::fopen(o.out.c_str(), "w");
  if (f == nullptr) Die("cannot write " + o.out + ": " + std::strerror(errno));
  return f;
}

Client Connect() {
  auto c = Client::Connect();
  if (!c.ok()) Die("connect", c.status());
  return std::move(*c);
}

long MinorFaults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// Maps every page of this client's read view of the region now (a warm
// standby), so that a restore takes no page faults on the chunks: the pages
// exist already (the region is allocated at format); this only fills this
// process's page tables. Best effort (MADV_POPULATE_READ: Linux 5.14).
double WarmReadView(Client& c) {
  const void* base = nullptr;
  size_t size = 0;
  const auto t0 = Clock::now();
  if (gismo_region_read_view(c.c_client(), &base, &size) == GISMO_OK) {
    (void)madvise(const_cast<void*>(base), size, MADV_POPULATE_READ);
  }
  return Seconds(Clock::now() - t0);
}

ObjectId TokenId(const Options& o) { return ObjectId::FromName(o.set + "/active"); }

int Active(const Options& o) {
  Client c = Connect();
  State st(o);
  Restored r;
  if (Restore(c, st, o, &r)) {
    Say("active: restored generation %" PRIu64 " at offset %" PRIu64 "\n", r.generation, r.offset);
  }
  // The token: owned, so deleted (and the delete notified) only once this
  // client is fenced and recovered.
  if (Status s = c.Put(TokenId(o), "active", GISMO_CREATE_OWNED); !s.ok()) Die("token", s);
  Say("active: running (%.1f MiB of state, checkpoint every %" PRIu64 " events)\n", Mib(st.size()),
      o.every);
  FILE* out = OpenOut(o);
  RunJob(c, st, o, "active", out);
  std::fclose(out);
  (void)c.Delete(TokenId(o));
  Say("active: done\n");
  return 0;
}

int Standby(const Options& o) {
  Client c = Connect();
  Client follower = Connect();
  State st(o);  // reserved and touched now, not at the take-over
  const double warm_s = WarmReadView(c);
  // Follows the published checkpoints: one wait_name per publish, woken
  // through the manager by the active's compare-and-swap on node 1 (the
  // timeout only bounds the wait; after the take-over the standby's own
  // first publish wakes it to stop).
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> seen{0};
  std::thread follow([&] {
    ObjectId known;
    bool have = false;
    while (!stop.load(std::memory_order_acquire)) {
      auto b = follower.WaitName(o.set, have ? &known : nullptr, 30000);
      if (b.status().code() == GISMO_ERR_TIMEOUT) continue;
      if (!b.ok() || stop.load(std::memory_order_acquire)) break;
      known = ObjectId(b->id);
      have = true;
      seen.store(b->version, std::memory_order_release);
      Say("standby: checkpoint %" PRIu64 " of %s published (seen through wait_name)\n", b->version,
          o.set.c_str());
    }
  });
  Say("standby: following checkpoints of %s (region read view mapped in %.3f s)\n", o.set.c_str(),
      warm_s);

  // Subscribe before looking at the token: a delete after this is notified,
  // one before it shows as the token missing.
  auto sub = c.Subscribe();
  if (!sub.ok()) Die("subscribe", sub.status());
  auto token = c.Get(TokenId(o), 60000);
  if (!token.ok()) Die("no active job appeared within 60 s", token.status());
  (void)token->Release();
  Say("standby: waiting for the active's token to be deleted (it is fenced)\n");
  auto present = [&] {
    auto p = c.Contains(TokenId(o));
    if (!p.ok()) Die("contains", p.status());
    return *p;
  };
  bool gone = !present();
  while (!gone) {
    auto n = sub->Next(-1);
    if (!n.ok()) Die("notifications", n.status());
    if (n->overflow()) {
      gone = !present();
    } else if (n->event == GISMO_EVENT_DELETED && n->id == TokenId(o)) {
      gone = true;
    }
  }
  const uint64_t detected_ns = RealtimeNs();
  const auto t0 = Clock::now();
  const long faults0 = MinorFaults();
  stop.store(true, std::memory_order_release);
  const uint64_t followed = seen.load(std::memory_order_acquire);
  Restored r;
  if (!Restore(c, st, o, &r)) Die("the active was fenced before its first checkpoint");
  const double restore_s = Seconds(Clock::now() - t0);
  Say("standby: takeover detected_ns=%" PRIu64 " restore_s=%.6f generation=%" PRIu64
      " offset=%" PRIu64 " state_bytes=%" PRIu64 " followed=%" PRIu64 " page_faults=%ld\n",
      detected_ns, restore_s, r.generation, r.offset, st.size(), followed, MinorFaults() - faults0);
  FILE* out = OpenOut(o);
  RunJob(c, st, o, "standby", out);
  std::fclose(out);
  follow.join();
  Say("standby: done\n");
  return 0;
}

// ---- the comparisons: the same state from a peer over TCP, from a file -----

void SendAll(int fd, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) Die(std::string("send: ") + std::strerror(errno));
    b += k;
    n -= static_cast<size_t>(k);
  }
}

bool RecvAll(int fd, void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    ssize_t k = recv(fd, b, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    b += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

// A surviving peer: holds the newest checkpoint (by pointer) and streams it
// to one client: u64 size, the bytes, u64 XXH64 of them.
int Serve(const Options& o) {
  Client c = Connect();
  auto r = gismo::checkpoint::Restore(c, o.set);
  if (!r.ok()) Die("restore", r.status());
  uint64_t size = 0;
  XXH64_state_t* h = XXH64_createState();
  XXH64_reset(h, 0);
  for (const gismo::Buffer& b : r->chunks) {
    size += b.size();
    XXH64_update(h, b.data(), b.size());
  }
  const uint64_t sum = XXH64_digest(h);
  XXH64_freeState(h);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(o.port));
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(ls, 1) != 0) {
    Die(std::string("listen: ") + std::strerror(errno));
  }
  Say("serve: listening on port %d (%.1f MiB, generation %" PRIu64 ")\n", o.port, Mib(size),
      r->generation);
  int fd = accept(ls, nullptr, nullptr);
  if (fd < 0) Die(std::string("accept: ") + std::strerror(errno));
  SendAll(fd, &size, sizeof size);
  for (const gismo::Buffer& b : r->chunks) SendAll(fd, b.data(), b.size());
  SendAll(fd, &sum, sizeof sum);
  char end;
  (void)recv(fd, &end, 1, 0);  // until the client has it all
  close(fd);
  close(ls);
  return 0;
}

int Compare(const Options& o) {
  Client c = Connect();
  State st(o);
  // 1. gismo: by pointer, checksums verified, copied into the state.
  auto t0 = Clock::now();
  Restored r;
  if (!Restore(c, st, o, &r)) Die("nothing to restore");
  const double gismo_s = Seconds(Clock::now() - t0);
  const uint64_t want = XXH64(st.data(), st.size(), 0);
  // Again: the same chunks, mapped and read once already by this process.
  std::memset(st.data(), 0, st.size());
  t0 = Clock::now();
  if (!Restore(c, st, o, &r)) Die("nothing to restore");
  const double warm_s = Seconds(Clock::now() - t0);

  // 2. A local file: written and synced, dropped from the page cache, then
  //    read back into the state and its checksum verified.
  {
    int fd = open(o.file.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0) Die("cannot write " + o.file + ": " + std::strerror(errno));
    for (uint64_t at = 0; at < st.size();) {
      ssize_t k = write(fd, st.data() + at, std::min<uint64_t>(st.size() - at, 64 << 20));
      if (k <= 0) Die(std::string("write: ") + std::strerror(errno));
      at += static_cast<uint64_t>(k);
    }
    if (fsync(fd) != 0) Die(std::string("fsync: ") + std::strerror(errno));
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
  std::memset(st.data(), 0, st.size());
  t0 = Clock::now();
  {
    int fd = open(o.file.c_str(), O_RDONLY);
    if (fd < 0) Die("cannot read " + o.file + ": " + std::strerror(errno));
    for (uint64_t at = 0; at < st.size();) {
      ssize_t k = read(fd, st.data() + at, std::min<uint64_t>(st.size() - at, 64 << 20));
      if (k <= 0) Die(std::string("read: ") + std::strerror(errno));
      at += static_cast<uint64_t>(k);
    }
    close(fd);
  }
  const bool file_ok = XXH64(st.data(), st.size(), 0) == want;
  const double file_s = Seconds(Clock::now() - t0);
  unlink(o.file.c_str());

  // 3. A TCP stream from a surviving peer (Serve).
  std::memset(st.data(), 0, st.size());
  const size_t colon = o.peer.rfind(':');
  if (colon == std::string::npos) Die("--peer must be HOST:PORT");
  t0 = Clock::now();
  addrinfo hints{}, *ai = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(o.peer.substr(0, colon).c_str(), o.peer.substr(colon + 1).c_str(), &hints, &ai) !=
      0) {
    Die("cannot resolve " + o.peer);
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    Die("connect to " + o.peer + ": " + std::strerror(errno));
  }
  freeaddrinfo(ai);
  uint64_t size = 0, sum = 0;
  if (!RecvAll(fd, &size, sizeof size) || size != st.size() || !RecvAll(fd, st.data(), st.size()) ||
      !RecvAll(fd, &sum, sizeof sum)) {
    Die("the peer's stream ended early or has another size");
  }
  const bool tcp_ok = XXH64(st.data(), st.size(), 0) == want && sum == want;
  const double tcp_s = Seconds(Clock::now() - t0);
  close(fd);
  Say("compare: state_bytes=%" PRIu64
      " gismo_s=%.6f warm_s=%.6f file_s=%.6f file_ok=%d tcp_s=%.6f "
      "tcp_ok=%d\n",
      st.size(), gismo_s, warm_s, file_s, file_ok ? 1 : 0, tcp_s, tcp_ok ? 1 : 0);
  return file_ok && tcp_ok ? 0 : 1;
}

// Removes the set: its name and every object of its checkpoints.
int Drop(const Options& o) {
  Client c = Connect();
  if (Status s = gismo::checkpoint::Drop(c, o.set); !s.ok()) Die("drop", s);
  Say("drop: %s removed\n", o.set.c_str());
  return 0;
}

// A decimal number of at most `max` (strtoull alone takes "-1" as 2^64-1).
uint64_t Number(const char* flag, const char* v, uint64_t max = UINT64_MAX) {
  char* end = nullptr;
  errno = 0;
  unsigned long long x = std::strtoull(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || *v == '-' || *v == '+') {
    Die(std::string(flag) + " needs a number");
  }
  if (x > max) Die(std::string(flag) + " is at most " + std::to_string(max));
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (argc < 2) Die("usage: gismo_failover active|standby|serve|compare|drop [options]");
  o.role = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) Die(a + " needs a value");
    const char* v = argv[++i];
    if (a == "--set")
      o.set = v;
    else if (a == "--events")
      o.events = Number(a.c_str(), v);
    else if (a == "--every")
      o.every = Number(a.c_str(), v);
    else if (a == "--symbols")
      o.symbols = static_cast<uint32_t>(Number(a.c_str(), v, uint64_t{1} << 20));
    else if (a == "--history")
      o.history = static_cast<uint32_t>(Number(a.c_str(), v, uint64_t{1} << 20));
    else if (a == "--window")
      o.window = Number(a.c_str(), v);
    else if (a == "--chunk-mib")
      o.chunk_mib = Number(a.c_str(), v, uint64_t{1} << 20);  // 1 TiB, an object's most
    else if (a == "--hang-in-checkpoint")
      o.hang_in = Number(a.c_str(), v);
    else if (a == "--out")
      o.out = v;
    else if (a == "--port")
      o.port = static_cast<int>(Number(a.c_str(), v, 65535));
    else if (a == "--peer")
      o.peer = v;
    else if (a == "--file")
      o.file = v;
    else
      Die("unknown option " + a);
  }
  if (o.events == 0 || o.every == 0 || o.window == 0 || o.symbols == 0 || o.history == 0 ||
      o.chunk_mib == 0 || o.symbols > (1u << 20) || o.history > (1u << 20) ||
      uint64_t{o.symbols} * o.history > (uint64_t{1} << 32)) {
    Die("--events, --every, --window, --chunk-mib, --symbols, --history must be positive "
        "(symbols and history at most 2^20, their product at most 2^32)");
  }
  if (o.role == "active") return Active(o);
  if (o.role == "standby") return Standby(o);
  if (o.role == "serve") return Serve(o);
  if (o.role == "compare") return Compare(o);
  if (o.role == "drop") return Drop(o);
  Die("unknown role " + o.role);
}
