// gismo put: store a file (or stdin) as a sealed object.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "args/parse_args.h"
#include "commands.h"

namespace gismo::cli {
namespace {

struct PutArgs {
  CommonOptions common;
  ObjectArg object;
  std::string file;  // "-": stdin
  std::string metadata;
  // A name to bind to the object once it is stored (given empty: refused).
  std::optional<std::string> bind;
  // A stream's size, when the caller knows it: read straight into the region.
  std::optional<uint64_t> size;
  // How much of a stream of unknown size is kept in memory before the rest
  // goes to a spool file.
  uint64_t buffer_bytes = 64ull << 20;
};

// Whether `fd` is on a file system whose files the kernel makes up as they
// are read, so that their stated sizes are not their lengths.
bool OnPseudoFileSystem(int fd) {
  struct statfs fs {};
  if (fstatfs(fd, &fs) != 0) return false;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case PROC_SUPER_MAGIC:
    case SYSFS_MAGIC:
    case DEBUGFS_MAGIC:
    case TRACEFS_MAGIC:
    case SECURITYFS_MAGIC:
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC:
      return true;
    default:
      return false;
  }
}

// An open input; closes itself.
class Input {
 public:
  explicit Input(const std::string& path) : path_(path) {
    if (path == "-") {
      // Closed, it is /dev/null now (TakeStandardDescriptors): an empty
      // object would be stored.
      if (tools::g_standard_descriptor_closed[STDIN_FILENO]) {
        Fail(kExitLocalIo, "stdin is closed: nothing to store (give a FILE, or - with an input)");
      }
      fd_ = STDIN_FILENO;
      return;
    }
    fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) Fail(kExitLocalIo, "cannot open '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (fstat(fd_, &st) != 0) Fail(kExitLocalIo, "cannot stat '" + path + "': " + Errno());
    if (S_ISDIR(st.st_mode)) Fail(kExitLocalIo, "'" + path + "' is a directory");
    // A regular file is read straight into the region at its stated size.
    // A file of the kernel's (procfs, sysfs, debugfs, cgroupfs, ...) states
    // a size that is not its contents' (0, or a page), and one that says 0
    // bytes may be such a file elsewhere: those are streamed, like a pipe.
    if (S_ISREG(st.st_mode) && st.st_size > 0 && !OnPseudoFileSystem(fd_)) {
      size_ = static_cast<uint64_t>(st.st_size);
    }
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
  // Fills exactly n bytes or fails: a file that shrank while read
  // (kExitLocalIo), a stream shorter than --size (kExitUsage, as a file
  // whose size is not --size).
  void ReadExactly(uint8_t* p, size_t n) {
    for (size_t done = 0; done < n;) {
      size_t r = Read(p + done, n - done);
      if (r == 0) {
        Fail(size() ? kExitLocalIo : kExitUsage, name() + " ended after " + std::to_string(done) +
                                                     " of " + std::to_string(n) +
                                                     " bytes; nothing stored");
      }
      done += r;
    }
  }
  // Reads one more byte: true if the input had more than it was read for.
  bool HasMore() {
    uint8_t byte;
    return Read(&byte, 1) != 0;
  }

 private:
  static std::string Errno() { return std::strerror(errno); }
  std::string path_;
  int fd_ = -1;
  std::optional<uint64_t> size_;
};

// A stream's bytes, to its end: the first `memory_bytes` in memory, the
// rest in an unlinked file in $TMPDIR (else /tmp), so that a stream of any
// length costs bounded memory. A stream longer than `limit` (what the store
// could hold) fails with kExitStore once it passes it: /dev/zero ends there.
class Spool {
 public:
  Spool(uint64_t memory_bytes, uint64_t limit) : memory_bytes_(memory_bytes), limit_(limit) {}
  ~Spool() {
    if (file_ >= 0) close(file_);
  }
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  void Fill(Input& in) {
    std::vector<uint8_t> chunk(kChunk);
    for (;;) {
      const size_t got = in.Read(chunk.data(), chunk.size());
      if (got == 0) return;
      // In order: once the spool file has bytes, every later one goes there.
      if (file_ < 0 && memory_.size() + got <= memory_bytes_) {
        Keep(chunk.data(), got);
      } else {
        WriteToFile(chunk.data(), got);
      }
      if (size() > limit_) {
        Fail(kExitStore, in.name() + " holds more than the store's " + FormatSize(limit_) +
                             " of heap, free or evictable; stopped reading");
      }
    }
  }

  uint64_t size() const { return memory_.size() + file_bytes_; }

  // Copies the bytes, in order, to `dst` (size() bytes).
  void CopyTo(uint8_t* dst) {
    if (!memory_.empty()) {  // else data() may be null, and so may dst (an empty object)
      std::memcpy(dst, memory_.data(), memory_.size());
      dst += memory_.size();
    }
    for (uint64_t done = 0; done < file_bytes_;) {
      const ssize_t r = pread(file_, dst + done, std::min<uint64_t>(kChunk, file_bytes_ - done),
                              static_cast<off_t>(done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) Fail(kExitLocalIo, "cannot read back the spool file in " + dir_ + ": " + Why(r));
      done += static_cast<uint64_t>(r);
    }
  }

 private:
  static constexpr size_t kChunk = 1 << 20;

  static std::string Why(ssize_t r) { return r == 0 ? "it ended early" : std::strerror(errno); }

  // Appends to memory_, whose capacity grows by doubling but never past
  // memory_bytes_ (REQUIRES: memory_.size() + n <= memory_bytes_).
  void Keep(const uint8_t* p, size_t n) {
    if (memory_.capacity() - memory_.size() < n) {
      memory_.reserve(std::min<uint64_t>(
          std::max<uint64_t>(2 * memory_.capacity(), memory_.size() + n), memory_bytes_));
    }
    memory_.insert(memory_.end(), p, p + n);
  }

  void WriteToFile(const uint8_t* p, size_t n) {
    if (file_ < 0) OpenFile();
    while (n > 0) {
      const ssize_t w = write(file_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        Fail(kExitLocalIo, "cannot spool the input beyond " + FormatSize(memory_bytes_) + " to " +
                               dir_ + ": " + Why(w) +
                               " (set TMPDIR to a larger place, or raise --buffer)");
      }
      p += w;
      n -= static_cast<size_t>(w);
      file_bytes_ += static_cast<uint64_t>(w);
    }
  }

  void OpenFile() {
    const char* tmpdir = std::getenv("TMPDIR");
    dir_ = tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
    // Never named where it can be: nothing is left behind if put is killed.
    file_ = open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (file_ < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
      std::string path = dir_ + "/gismo-put-XXXXXX";
      file_ = mkostemp(path.data(), O_CLOEXEC);
      if (file_ >= 0) unlink(path.c_str());
    }
    if (file_ < 0) {
      Fail(kExitLocalIo, "cannot make a spool file in " + dir_ + ": " + std::strerror(errno) +
                             " (set TMPDIR, or raise --buffer)");
    }
  }

  const uint64_t memory_bytes_;
  const uint64_t limit_;
  std::vector<uint8_t> memory_;
  int file_ = -1;
  uint64_t file_bytes_ = 0;
  std::string dir_;
};

int RunPut(PutArgs a) {
  // With --name the one positional is the file.
  if (!a.object.name.empty() && a.file.empty()) std::swap(a.object.hex, a.file);
  ObjectId id = a.object.Resolve();
  if (a.file.empty()) Fail(kExitUsage, "missing FILE (a path, or - for stdin)");
  // A name the table cannot take is refused before anything is stored (a
  // retry would find the object there).
  if (a.bind) CheckTableName(*a.bind, "--bind");
  Input in(a.file);  // before connecting: a bad file costs no connection
  if (a.size && in.size() && *a.size != *in.size()) {
    Fail(kExitUsage, in.name() + " has " + std::to_string(*in.size()) + " bytes, not --size " +
                         std::to_string(*a.size));
  }
  Client client = Connect(a.common);
  std::span<const uint8_t> meta(reinterpret_cast<const uint8_t*>(a.metadata.data()),
                                a.metadata.size());
  const std::string what = "cannot store object " + id.Hex();
  uint64_t size = 0;
  if (in.size() || a.size) {
    // A regular file, or a stream whose size was given, is read straight
    // into the shared region: no copy.
    size = in.size() ? *in.size() : *a.size;
    auto buf = client.Create(id, size, meta);
    if (!buf.ok()) Fail(buf.status(), what);
    // On a failure (an Error thrown) ~MutableBuffer aborts the object.
    in.ReadExactly(buf->data(), size);
    // A stream longer than --size, or a file that grew while it was read (a
    // log being written): storing its first bytes would lose the rest.
    if (in.HasMore()) {
      Fail(in.size() ? kExitLocalIo : kExitUsage,
           in.name() + (in.size() ? " grew past the " : " holds more than --size ") +
               std::to_string(size) + (in.size() ? " bytes it had when opened" : " bytes") +
               "; nothing stored");
    }
    if (Status s = buf->SealAndRelease(); !s.ok()) Fail(s, what);
  } else {
    // A stream's size is known only at its end: it is kept (in memory, then
    // in a spool file) up to what the store could hold, then copied in. The
    // create evicts evictable objects to make room, as for a file, so the
    // bound is the heap, not what is free now.
    auto usage = client.Usage();
    if (!usage.ok()) Fail(usage.status(), what);
    Spool spool(a.buffer_bytes, usage->capacity_bytes);
    spool.Fill(in);
    size = spool.size();
    auto buf = client.Create(id, size, meta);
    if (!buf.ok()) Fail(buf.status(), what);
    spool.CopyTo(buf->data());
    if (Status s = buf->SealAndRelease(); !s.ok()) Fail(s, what);
  }
  if (a.bind) {
    if (Status s = client.BindName(*a.bind, id); !s.ok()) {
      Fail(s, "stored object " + id.Hex() + " but cannot bind the name '" + *a.bind + "' to it");
    }
  }
  if (a.common.json) {
    nlohmann::json j = {{"id", id.Hex()}, {"size", size}, {"metadata_size", a.metadata.size()}};
    if (!a.object.name.empty()) j["name"] = a.object.name;
    if (a.bind) j["bound"] = *a.bind;
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
  cmd->add_option("--size", a->size,
                  "The input's size in bytes (e.g. 4GiB): a stream is then read straight into "
                  "the store; more or fewer bytes are an error")
      ->transform(CLI::AsSizeValue(false));
  cmd->add_option("--buffer", a->buffer_bytes,
                  "A stream of unknown size is kept in memory up to this size (default 64MiB), "
                  "the rest in an unlinked file in $TMPDIR, until its end")
      ->transform(CLI::AsSizeValue(false))
      ->check([](const std::string& bytes) {
        return bytes == "0" ? std::string("must be at least 1 byte") : std::string();
      });
  AddCommonOptions(cmd, &a->common);
  return [a] { return RunPut(*a); };
}

}  // namespace gismo::cli
