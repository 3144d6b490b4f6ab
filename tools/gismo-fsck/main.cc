// gismo-fsck: checks a gismo region and says in plain words what is wrong.
// Exit status: 0 sound, 1 problems found, 2 usage error or cannot open,
// 3 an online check could not stop the world (a lock stayed busy).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "args/parse_args.h"
#include "client/client.h"
#include "fsck/fsck.h"
#include "region/region.h"

int main(int argc, char** argv) {
  std::string region_path = "/dev/shm/gismo", address;
  bool online = false, quiet = false, json = false, served_anyway = false;
  uint64_t lock_wait_ms = 0;
  CLI::App app{
      "gismo-fsck: verifies a gismo region: every byte of the heap free or owned by exactly one\n"
      "object, every object reachable and intact in the index, reference counts equal to the\n"
      "references live clients hold, no lock or unsealed object left to a dead client.\n"
      "Offline (no --address): nothing may run on the region. Online (--address): connects\n"
      "to the manager as a client and checks with every lock held (clients wait meanwhile)."};
  app.add_option("--region", region_path, "Region to check (offline)")->capture_default_str();
  app.add_option("--address", address,
                 "Check online through the manager at this address (unix:PATH, tcp:HOST:PORT)");
  app.add_flag("--online", online, "Check online at $GISMO_ADDRESS (or the default socket)");
  app.add_option("--lock-wait-ms", lock_wait_ms,
                 "Online: give up (exit 3) when one lock stays busy this long (default: the "
                 "region's lock wait)")
      ->check(CLI::Range(uint64_t{0}, gismo::fsck::kMaxLockWaitMs));
  app.add_flag("--offline-while-served", served_anyway,
               "Offline: check even though a manager on this host serves the region (its "
               "clients' operations in flight show as problems)");
  app.add_flag("-q,--quiet", quiet, "Print problems only");
  app.add_flag("--json", json, "Print one JSON object (the report) instead of text");
  app.footer(
      "\nExit status: 0 the region is sound, 1 problems were found (each printed as\n"
      "'problem: ...'), 2 a usage error, or the region or the manager could not be opened\n"
      "(or the region is served, offline), 3 online: the check could not finish (a lock\n"
      "stayed busy past --lock-wait-ms, or the connection was lost).");
  GISMO_PARSE_ARGS(app, argc, argv);

  if (app.count("--region") != 0 && (online || !address.empty())) {
    fprintf(stderr,
            "gismo-fsck: --region checks offline, --online/--address online: give one or the "
            "other\n");
    return gismo::tools::kExitUsageError;
  }
  gismo::fsck::Report rep;
  const auto t0 = std::chrono::steady_clock::now();
  if (online || !address.empty()) {
    gismo::client::ConnectOptions options;
    options.address = address;
    auto c = gismo::client::ClientImpl::Connect(options);
    if (!c.ok()) {
      fprintf(stderr, "gismo-fsck: %s\n", c.status().message().c_str());
      return 2;
    }
    gismo::fsck::LockAs as{(*c)->slot(), (*c)->session(), lock_wait_ms};
    region_path = (*c)->region().path();
    auto checked = gismo::fsck::Check((*c)->region(), &as);
    (void)(*c)->Disconnect();
    if (!checked.ok()) {
      fprintf(stderr, "gismo-fsck: %s\n", checked.status().message().c_str());
      return 3;
    }
    rep = std::move(*checked);
  } else {
    // A manager on this host holds the region file's lock while it serves
    // (a hint only: one on another host is not seen). Reading a served
    // region without its locks would report every operation in flight as
    // damage.
    // O_NONBLOCK: a FIFO given as the region must not block the open
    // (Region::Open refuses it below).
    if (const int fd =
            served_anyway ? -1 : open(region_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        fd >= 0) {
      const bool served = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
      close(fd);  // (drops the probe's lock)
      if (served) {
        fprintf(stderr,
                "gismo-fsck: a gismo-manager on this host serves %s: check it online "
                "(--online, or --address ADDRESS), or stop the manager first "
                "(--offline-while-served checks it as it is)\n",
                region_path.c_str());
        return 2;
      }
    }
    // Read-only: an offline check writes nothing, so it needs no write
    // permission (a snapshot, a read-only medium, an auditor's account).
    auto r = gismo::region::Region::Open(region_path, gismo::region::Region::Access::kReadOnly);
    if (!r.ok()) {
      fprintf(stderr, "gismo-fsck: %s\n", r.status().message().c_str());
      return 2;
    }
    rep = *gismo::fsck::Check(**r, nullptr);  // offline: always a report
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  // `code`, unless the report could not be written (a full disk,
  // /dev/full): then 2, never a status without its report.
  auto reported = [](int code) {
    std::cout.flush();
    if (std::cout.fail() || std::fflush(stdout) != 0 || std::ferror(stdout)) {
      fprintf(stderr, "gismo-fsck: cannot write the report to stdout\n");
      return 2;
    }
    return code;
  };
  if (json) {
    nlohmann::json j = {{"region", region_path},
                        {"sound", rep.sound()},
                        {"mode", rep.stopped_the_world ? "online" : "offline"},
                        {"problems", rep.problems},
                        {"objects", rep.objects},
                        {"sealed", rep.sealed},
                        {"unsealed", rep.unsealed},
                        {"deleting", rep.deleting},
                        {"object_bytes", rep.object_bytes},
                        {"pages_used", rep.pages_used},
                        {"slab_pages", rep.slab_pages},
                        {"run_pages", rep.run_pages},
                        {"pages_free", rep.pages_free},
                        {"live_clients", rep.live_clients},
                        {"held_references", rep.held_references},
                        {"names", rep.names},
                        {"dangling_names", rep.dangling_names},
                        {"check_ms", ms}};
    // A path need not be UTF-8: invalid bytes print as U+FFFD.
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    return reported(rep.sound() ? 0 : 1);
  }
  for (const auto& p : rep.problems) printf("problem: %s\n", p.c_str());
  if (!quiet) {
    printf(
        "%s: %s (%s): %llu objects (%llu sealed, %llu unsealed, %llu deleting), %llu pages in "
        "use (%llu slab, %llu in runs), %llu free, %llu live clients holding %llu references, "
        "%llu names (%llu bound to objects that are gone); checked in %.1f ms\n",
        region_path.c_str(), rep.sound() ? "sound" : "NOT SOUND",
        rep.stopped_the_world ? "online" : "offline", static_cast<unsigned long long>(rep.objects),
        static_cast<unsigned long long>(rep.sealed), static_cast<unsigned long long>(rep.unsealed),
        static_cast<unsigned long long>(rep.deleting),
        static_cast<unsigned long long>(rep.pages_used),
        static_cast<unsigned long long>(rep.slab_pages),
        static_cast<unsigned long long>(rep.run_pages),
        static_cast<unsigned long long>(rep.pages_free),
        static_cast<unsigned long long>(rep.live_clients),
        static_cast<unsigned long long>(rep.held_references),
        static_cast<unsigned long long>(rep.names),
        static_cast<unsigned long long>(rep.dangling_names), ms);
  }
  return reported(rep.sound() ? 0 : 1);
}
