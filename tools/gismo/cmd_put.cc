// gismo put: store a file (or stdin) as a sealed object.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"

namespace gismo::cli {
namespace {

struct PutArgs {
  CommonOptions common;
  ObjectArg object;
  std::string file;  // "-": stdin
  std::string metadata;
  std::string bind;  // a name to bind to the object once it is stored
};

// An open input; closes itself.
class Input {
 public:
  explicit Input(const std::string& path) : path_(path) {
    if (path == "-") {
      fd_ = STDIN_FILENO;
      return;
    }
    fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) Fail(kExitLocalIo, "cannot open '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (fstat(fd_, &st) != 0) Fail(kExitLocalIo, "cannot stat '" + path + "': " + Errno());
    if (S_ISDIR(st.st_mode)) Fail(kExitLocalIo, "'" + path + "' is a directory");
    // A regular file is read straight into the region at its stated size.
    // One that says 0 bytes may be a /proc or sysfs file whose size is not
    // known before it is read: it is streamed, like a pipe.
    if (S_ISREG(st.st_mode) && st.st_size > 0) size_ = static_cast<uint64_t>(st.st_size);
  }
  ~Input() {
    if (fd_ > STDIN_FILENO) close(fd_);
  }
  Input(const Input&) = delete;
  Input& operator=(const Input&) = delete;

  // The size of a regular file; nullopt for a stream (stdin, pipe, device).
  std::optional<uint64_t> size() const { return size_; }
  std::string name() const { return path_ == "-" ? "stdin" : "'" + path_ + "'"; }

  // Reads up to n bytes; 0 at end of input. Fails with kExitLocalIo.
  size_t Read(uint8_t* p, size_t n) {
    for (;;) {
      ssize_t r = read(fd_, p, n);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno != EINTR) Fail(kExitLocalIo, "cannot read " + name() + ": " + Errno());
    }
  }
  // Fills exactly n bytes or fails (the file shrank while read).
  void ReadExactly(uint8_t* p, size_t n) {
    while (n > 0) {
      size_t r = Read(p, n);
      if (r == 0) Fail(kExitLocalIo, name() + " ended early (changed while being read?)");
      p += r;
      n -= r;
    }
  }
  // Reads to the end of the input; fails with kExitStore once it holds more
  // than `limit` bytes (an endless stream such as /dev/zero ends there).
  std::vector<uint8_t> ReadAll(uint64_t limit) {
    std::vector<uint8_t> data;
    size_t used = 0;
    for (;;) {
      if (data.size() - used < 64 * 1024) {
        data.resize(std::min<uint64_t>(std::max<size_t>(2 * data.size(), 1 << 20), limit + 1));
      }
      size_t r = Read(data.data() + used, data.size() - used);
      if (r == 0) break;
      used += r;
      if (used > limit) {
        Fail(kExitStore, name() + " holds more than the store's " + FormatSize(limit) +
                             " of free space; stopped reading");
      }
    }
    data.resize(used);
    return data;
  }

 private:
  static std::string Errno() { return std::strerror(errno); }
  std::string path_;
  int fd_ = -1;
  std::optional<uint64_t> size_;
};

int RunPut(PutArgs a) {
  // With --name the one positional is the file.
  if (!a.object.name.empty() && a.file.empty()) std::swap(a.object.hex, a.file);
  ObjectId id = a.object.Resolve();
  if (a.file.empty()) Fail(kExitUsage, "missing FILE (a path, or - for stdin)");
  Input in(a.file);  // before connecting: a bad file costs no connection
  Client client = Connect(a.common);
  std::span<const uint8_t> meta(reinterpret_cast<const uint8_t*>(a.metadata.data()),
                                a.metadata.size());
  const std::string what = "cannot store object " + id.Hex();
  uint64_t size = 0;
  if (auto known = in.size()) {
    // A regular file is read straight into the shared region: no copy.
    size = *known;
    auto buf = client.Create(id, size, meta);
    if (!buf.ok()) Fail(buf.status(), what);
    in.ReadExactly(buf->data(), size);  // on failure ~MutableBuffer aborts the object
    if (Status s = buf->SealAndRelease(); !s.ok()) Fail(s, what);
  } else {
    // A stream's size is known only at its end: it is read into memory, up
    // to what the store could hold.
    auto usage = client.Usage();
    if (!usage.ok()) Fail(usage.status(), what);
    std::vector<uint8_t> data = in.ReadAll(usage->largest_free_bytes);
    size = data.size();
    if (Status s = client.Put(id, data, meta); !s.ok()) Fail(s, what);
  }
  if (!a.bind.empty()) {
    if (Status s = client.BindName(a.bind, id); !s.ok()) {
      Fail(s, "stored object " + id.Hex() + " but cannot bind the name '" + a.bind + "' to it");
    }
  }
  if (a.common.json) {
    nlohmann::json j = {{"id", id.Hex()}, {"size", size}, {"metadata_size", a.metadata.size()}};
    if (!a.object.name.empty()) j["name"] = a.object.name;
    if (!a.bind.empty()) j["bound"] = a.bind;
    PrintJson(j);
  } else {
    printf("stored %s (%s)\n", id.Hex().c_str(), FormatSize(size).c_str());
  }
  return kExitOk;
}

}  // namespace

Runner SetupPut(CLI::App* cmd) {
  auto a = std::make_shared<PutArgs>();
  cmd->add_option("ID", a->object.hex, "Object id, 40 hex digits (omit with --name)");
  cmd->add_option("FILE", a->file, "File to store, or - for stdin");
  a->object.AddNameOption(cmd, /*with_bound=*/false);
  cmd->add_option("--bind", a->bind,
                  "Then bind this name of the region's name table to the object (gismo get "
                  "--bound NAME finds it)");
  cmd->add_option("--metadata", a->metadata, "Metadata to attach to the object (text)");
  AddCommonOptions(cmd, &a->common);
  return [a] { return RunPut(*a); };
}

}  // namespace gismo::cli
