// The region as a file format: format, validate, refuse what is not ours.
#include "region/region.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <fstream>

#include "test_util.h"

namespace gismo::region {
namespace {

class RegionTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = "/dev/shm/" + gismo::testing::UniqueName("region"); }
  void TearDown() override { unlink(path_.c_str()); }
  // Formats a 16 MiB region (every count its default), writes `size` bytes
  // of `value` at superblock offset `offset` and the checksum that makes the
  // superblock whole again (as a writer that knows the format would), and
  // opens it: a refusal's status (OK if it opened).
  Status OpenWithSuperblockField(size_t offset, const void* value, size_t size) {
    FormatOptions o;
    o.size = 16ull << 20;
    if (auto r = Region::Format(path_, o); !r.ok()) return r.status();
    const int fd = open(path_.c_str(), O_RDWR);
    if (fd < 0) return Status(GISMO_ERR_IO, "open");
    Superblock sb{};
    const bool written =
        pwrite(fd, value, size, static_cast<off_t>(offset)) == static_cast<ssize_t>(size) &&
        pread(fd, &sb, sizeof sb, 0) == static_cast<ssize_t>(sizeof sb);
    const uint64_t checksum = SuperblockChecksum(sb);
    const bool summed = written && pwrite(fd, &checksum, 8, offsetof(Superblock, checksum)) == 8;
    close(fd);
    if (!summed) return Status(GISMO_ERR_IO, "write");
    auto r = Region::Open(path_);
    return r.ok() ? Status() : r.status();
  }
  std::string path_;
};

TEST_F(RegionTest, FormatThenOpenValidates) {
  FormatOptions o;
  o.size = 32ull << 20;
  o.max_objects = 1000;
  {
    auto r = Region::Format(path_, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const Superblock& sb = (*r)->sb();
    EXPECT_EQ(sb.magic, kMagic);
    EXPECT_EQ(sb.format_version, kFormatVersion);
    EXPECT_EQ(sb.region_size, 32ull << 20);
    EXPECT_EQ(sb.heap_offset % kHeapAlign, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>((*r)->heap()) % kHeapAlign, 0u);
    EXPECT_GE(sb.max_objects, 1000u);
    EXPECT_LE(sb.heap_offset + sb.heap_size, sb.region_size);
    EXPECT_EQ((*r)->alloc().free_pages.load(), sb.num_pages);
  }
  auto r = Region::Open(path_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->size(), 32ull << 20);
}

// A format stopped by a signal or a crash (its state still kFormatting) is
// said to be one, and formatted anew only with --format: its formatter may
// run still (a standby's, another host's). Before, one stopped while its
// space was allocated was "not a gismo region (bad magic number)", and one
// stopped later "corrupt" (its checksum not yet written).
TEST_F(RegionTest, AFormatThatDidNotFinishIsSaidToBeOne) {
  FormatOptions o;
  o.size = 16ull << 20;
  {
    auto r = Region::Format(path_, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    (*r)->sb().state.store(static_cast<uint64_t>(RegionState::kFormatting),
                           std::memory_order_release);
    (*r)->sb().checksum ^= 1;  // as before the format's last steps
  }
  auto open = Region::Open(path_);
  ASSERT_FALSE(open.ok());
  EXPECT_NE(open.status().message().find("not completely formatted"), std::string::npos)
      << open.status().ToString();
  bool formatted = false;
  auto refused = Region::OpenOrFormat(path_, o, false, &formatted);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--format"), std::string::npos)
      << refused.status().ToString();
  auto again = Region::OpenOrFormat(path_, o, true, &formatted);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(formatted);
}

TEST_F(RegionTest, RefusesAFileThatIsNotARegion) {
  {
    std::ofstream f(path_);
    f << std::string(1 << 20, 'x');
  }
  auto r = Region::Open(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), GISMO_ERR_BAD_REGION);
  EXPECT_NE(r.status().message().find("not a gismo region"), std::string::npos);
  // OpenOrFormat refuses to overwrite it without --format...
  bool formatted = false;
  FormatOptions o;
  o.size = 16ull << 20;
  auto r2 = Region::OpenOrFormat(path_, o, false, &formatted);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("--format"), std::string::npos);
  std::ifstream in(path_);
  char c;
  in >> c;
  EXPECT_EQ(c, 'x');  // untouched
  // ...and does with it.
  auto r3 = Region::OpenOrFormat(path_, o, true, &formatted);
  ASSERT_TRUE(r3.ok()) << r3.status().ToString();
  EXPECT_TRUE(formatted);
}

TEST_F(RegionTest, RefusesOtherVersionAndCorruption) {
  FormatOptions o;
  o.size = 16ull << 20;
  ASSERT_TRUE(Region::Format(path_, o).ok());
  int fd = open(path_.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint32_t version = 99;
  ASSERT_EQ(pwrite(fd, &version, 4, offsetof(Superblock, format_version)), 4);
  auto r = Region::Open(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("version 99"), std::string::npos);
  version = kFormatVersion;
  ASSERT_EQ(pwrite(fd, &version, 4, offsetof(Superblock, format_version)), 4);
  ASSERT_TRUE(Region::Open(path_).ok());
  uint64_t bogus = 12345;
  ASSERT_EQ(pwrite(fd, &bogus, 8, offsetof(Superblock, heap_offset)), 8);
  r = Region::Open(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("checksum"), std::string::npos);
  close(fd);
}

// A superblock whose checksum is right but which holds 0 where a count
// belongs: 0 means "derived from the size" when formatting, so the layout of
// a region formatted with the defaults still matched it, and every reader of
// fixed() saw 0 (a client table of max_clients - 1 = 2^32 - 1 helpers, a
// held table of no entries).
TEST_F(RegionTest, RefusesASuperblockWithAZeroCount) {
  struct Field {
    size_t offset;
    size_t size;
    const char* name;
  };
  const Field fields[] = {
      {offsetof(Superblock, max_objects), sizeof(Superblock::max_objects), "max_objects"},
      {offsetof(Superblock, max_clients), sizeof(Superblock::max_clients), "max_clients"},
      {offsetof(Superblock, held_capacity), sizeof(Superblock::held_capacity), "held_capacity"}};
  for (const Field& f : fields) {
    SCOPED_TRACE(f.name);
    const uint64_t zero = 0;
    const Status s = OpenWithSuperblockField(f.offset, &zero, f.size);
    EXPECT_EQ(s.code(), GISMO_ERR_BAD_REGION) << s.ToString();
    EXPECT_NE(s.message().find(f.name), std::string::npos) << s.message();
  }
}

// A superblock whose size is not a whole number of 2 MiB units (every
// format makes one) is refused, and the region is mapped in whole units
// whatever it says: on hugetlbfs a mapping of the size it said ran past the
// address range reserved for it, over the next mapping of the process.
TEST_F(RegionTest, RefusesASizeThatIsNotWhole2MiBUnits) {
  const uint64_t odd = (16ull << 20) - 4096;
  const Status s = OpenWithSuperblockField(offsetof(Superblock, region_size), &odd, sizeof odd);
  EXPECT_EQ(s.code(), GISMO_ERR_BAD_REGION) << s.ToString();
  EXPECT_NE(s.message().find("not a multiple of 2 MiB"), std::string::npos) << s.message();
}

TEST_F(RegionTest, RefusesTruncatedRegion) {
  FormatOptions o;
  o.size = 16ull << 20;
  ASSERT_TRUE(Region::Format(path_, o).ok());
  ASSERT_EQ(truncate(path_.c_str(), 8 << 20), 0);
  auto r = Region::Open(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos);
  // 16 KiB missing: the two sizes must read differently.
  ASSERT_TRUE(Region::Format(path_, o).ok());
  ASSERT_EQ(truncate(path_.c_str(), (16 << 20) - (16 << 10)), 0);
  r = Region::Open(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), GISMO_ERR_BAD_REGION);
  EXPECT_NE(r.status().message().find("superblock says 16777216 B"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("file holds 16760832 B"), std::string::npos)
      << r.status().message();
}

// A region larger than the free space of its file system: Format refuses it
// (it used to leave a sparse file whose first write past the free space
// raised SIGBUS in the writer and in the manager recovering it), and the
// manager's OpenOrFormat refuses an existing sparse region it cannot back.
// Runs in a child with a mount namespace of its own and a 24 MiB tmpfs; the
// exit status says which step failed.
TEST_F(RegionTest, RefusesARegionLargerThanItsFileSystem) {
  char dir[] = "/tmp/gismo-smallfs-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (unshare(CLONE_NEWNS) != 0) _exit(77);
    if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(77);
    if (mount("gismo-test", dir, "tmpfs", 0, "size=24m") != 0) _exit(77);
    const std::string region = std::string(dir) + "/region";
    FormatOptions o;
    o.size = 64ull << 20;
    auto big = Region::Format(region, o);
    if (big.ok()) _exit(10);
    if (big.status().code() != GISMO_ERR_IO ||
        big.status().message().find("no room") == std::string::npos) {
      _exit(11);
    }
    struct stat st {};
    if (stat(region.c_str(), &st) != 0 || st.st_size != 0) _exit(12);  // not left sparse
    // A region that fits, made sparse afterwards, with the space taken.
    o.size = 16ull << 20;
    {
      auto ok = Region::Format(region, o);
      if (!ok.ok()) _exit(13);
    }
    int fd = open(region.c_str(), O_RDWR);
    if (fd < 0 ||
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8 << 20, 8 << 20) != 0) {
      _exit(14);
    }
    close(fd);
    int filler = open((std::string(dir) + "/filler").c_str(), O_RDWR | O_CREAT, 0600);
    if (filler < 0) _exit(15);
    // Takes what is left (a failed fallocate would take nothing on tmpfs).
    const std::string chunk(1 << 16, 'f');
    while (write(filler, chunk.data(), chunk.size()) > 0) {
    }
    close(filler);
    bool formatted = false;
    auto reopened = Region::OpenOrFormat(region, o, false, &formatted);
    if (reopened.ok()) _exit(16);
    if (reopened.status().message().find("no room") == std::string::npos) _exit(17);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  rmdir(dir);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "no mount namespace (needs root)";
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10: a region larger than its file system was formatted, 11: wrong error, 12: the "
         "file was left sized, 13: a region that fits was refused, 14: punching a hole "
         "failed, 15: filler, 16: a sparse region that cannot be backed was opened, 17: wrong "
         "error";
}

// Makes read(2) and its variants fail with EIO in the calling process from
// now on, as they do on a PCI BAR's resource file (device DAX has no read at
// all). Only mmap can reach the bytes then.
bool ForbidReads() {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_read, 5, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_pread64, 4, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_readv, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_preadv, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_preadv2, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EIO),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(std::size(filter)), filter};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

// A region is opened and validated through mmap only: it may be a PCI BAR
// (resource2 of an ivshmem device, as in gismo-cluster's virtual machines)
// whose read() fails with EIO. The check runs in a child, which the filter
// confines; its exit status says which step failed.
TEST_F(RegionTest, OpensAndValidatesWithoutRead) {
  FormatOptions o;
  o.size = 32ull << 20;
  ASSERT_TRUE(Region::Format(path_, o).ok());
  const std::string not_a_region = path_ + ".x";
  {
    std::ofstream f(not_a_region);
    f << std::string(1 << 20, 'x');
  }
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!ForbidReads()) _exit(10);
    int fd = open(path_.c_str(), O_RDONLY);
    char c;
    if (fd < 0 || pread(fd, &c, 1, 0) != -1 || errno != EIO) _exit(11);  // the filter works
    close(fd);
    auto r = Region::Open(path_);
    if (!r.ok()) _exit(12);
    if ((*r)->sb().magic != kMagic || (*r)->size() != o.size) _exit(13);
    auto bad = Region::Open(not_a_region);
    if (bad.ok() || bad.status().code() != GISMO_ERR_BAD_REGION) _exit(14);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  unlink(not_a_region.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10: no seccomp, 11: read() not refused, 12: Open failed, 13: wrong region, "
         "14: a file that is no region was not refused";
}

// Options that make no region leave the file as it was: a region keeps its
// contents, and no file is created.
TEST_F(RegionTest, BadFormatOptionsTouchNoFile) {
  FormatOptions o;
  o.size = 16ull << 20;
  ASSERT_TRUE(Region::Format(path_, o).ok());
  struct stat before {};
  ASSERT_EQ(stat(path_.c_str(), &before), 0);
  FormatOptions bad = o;
  bad.event_capacity = 100;  // not a power of two
  auto f = Region::Format(path_, bad);
  EXPECT_EQ(f.status().code(), GISMO_ERR_INVALID_ARGUMENT) << f.status().ToString();
  struct stat after {};
  ASSERT_EQ(stat(path_.c_str(), &after), 0);
  EXPECT_EQ(after.st_size, before.st_size);
  EXPECT_TRUE(Region::Open(path_).ok()) << "the region was wiped";
  const std::string fresh = path_ + "-fresh";
  EXPECT_FALSE(Region::Format(fresh, bad).ok());
  EXPECT_NE(access(fresh.c_str(), F_OK), 0) << "a file was left behind";
  // Nor a device that is no device DAX (a block device's mapping faults
  // past its end; /dev/zero's is private memory).
  for (const char* device : {"/dev/null", "/dev/zero"}) {
    auto d = Region::Format(device, o);
    EXPECT_EQ(d.status().code(), GISMO_ERR_UNSUPPORTED) << device << ": " << d.status().ToString();
  }
}

TEST_F(RegionTest, MissingFileAndTinySizes) {
  auto r = Region::Open("/dev/shm/does-not-exist-gismo");
  ASSERT_FALSE(r.ok());
  FormatOptions o;
  o.size = 1 << 20;
  auto f = Region::Format(path_, o);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), GISMO_ERR_INVALID_ARGUMENT);
  o.size = 16ull << 20;
  o.max_objects = 1ull << 30;  // metadata larger than the region
  f = Region::Format(path_, o);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("--size"), std::string::npos);
  o.max_objects = 0;
  o.size = ~0ull - 4096;  // rounding it up to 2 MiB wrapped around to 0
  f = Region::Format(path_, o);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("too large"), std::string::npos) << f.status().message();
}

// The bounds a process takes from the superblock are the ones it validated:
// a write to the superblock after the region was opened (a hostile or
// broken client of the region) changes none of them. (Before, every bound
// was read again from the shared superblock: a held_capacity of 2^30
// written there made the manager's recovery of a client fault.)
TEST_F(RegionTest, BoundsAreTheValidatedOnesWhateverIsWrittenLater) {
  FormatOptions o;
  o.size = 32ull << 20;
  auto formatted = Region::Format(path_, o);
  ASSERT_TRUE(formatted.ok()) << formatted.status().ToString();
  auto r = Region::Open(path_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Region& region = **r;
  const Superblock& validated = region.fixed();
  const uint32_t held_capacity = validated.held_capacity, max_clients = validated.max_clients;
  const uint64_t heap_size = validated.heap_size, ring = validated.event_ring_capacity;
  const uint64_t names_offset = validated.names_offset;
  const uint64_t pages = region.num_pages();
  HeldEntry* held = region.held(1);
  LogEntry* log = region.log(1);
  Superblock& shared = (*formatted)->sb();
  shared.held_capacity = 1u << 30;
  shared.log_capacity = 1u << 30;
  shared.max_clients = ~0u;
  shared.num_pages = ~uint64_t{0};
  shared.heap_size = ~uint64_t{0};
  shared.event_ring_capacity = 1;
  shared.names_offset = ~uint64_t{0};
  EXPECT_EQ(region.fixed().held_capacity, held_capacity);
  EXPECT_EQ(region.max_clients(), max_clients);
  EXPECT_EQ(region.num_pages(), pages);
  EXPECT_FALSE(region.ValidPage(pages));
  EXPECT_FALSE(region.ValidHeapBlock(0, heap_size + 1));
  EXPECT_EQ(region.held(1), held);
  EXPECT_EQ(region.log(1), log);
  EXPECT_EQ(&region.event(1), &region.event(1 + ring));
  EXPECT_EQ(region.OffsetOf(&region.names()), names_offset);
  // A process that opens it now finds the superblock corrupt.
  auto again = Region::Open(path_);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), GISMO_ERR_BAD_REGION);
}

// The lock wait a region asks for is bounded: a huge lock_wait_ms (only a
// corrupt or hostile write puts one there) would make a client wait for
// centuries on a frozen lock holder, and overflow the deadlines it sets.
TEST_F(RegionTest, AHugeLockWaitInTheRegionCountsAsAnHour) {
  FormatOptions o;
  o.size = 32ull << 20;
  auto r = Region::Format(path_, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(LockWaitNs(**r), uint64_t{2'000'000'000});  // 0: the default
  (*r)->sb().lock_wait_ms.store(1500, std::memory_order_relaxed);
  EXPECT_EQ(LockWaitNs(**r), uint64_t{1'500'000'000});
  for (uint64_t huge : {kMaxLockWaitMs + 1, uint64_t{18'000'000'000'000}, ~uint64_t{0}}) {
    (*r)->sb().lock_wait_ms.store(huge, std::memory_order_relaxed);
    EXPECT_EQ(LockWaitNs(**r), kMaxLockWaitMs * 1'000'000) << huge;
  }
}

TEST(ParseSizeTest, UnitsAndErrors) {
  EXPECT_EQ(*ParseSize("512MiB"), 512ull << 20);
  EXPECT_EQ(*ParseSize("4GiB"), 4ull << 30);
  EXPECT_EQ(*ParseSize("1G"), 1ull << 30);
  EXPECT_EQ(*ParseSize("1.5KiB"), 1536u);
  EXPECT_EQ(*ParseSize("65536"), 65536u);
  EXPECT_EQ(*ParseSize("2GB"), 2000000000u);
  EXPECT_FALSE(ParseSize("lots").ok());
  EXPECT_FALSE(ParseSize("12XB").ok());
  EXPECT_FALSE(ParseSize("-5MiB").ok());
  // Sizes past 2^64 are refused (the conversion gave 0: "0 B below minimum").
  for (const char* huge : {"1e30", "18446744073709551616", "16777216TiB"}) {
    auto r = ParseSize(huge);
    ASSERT_FALSE(r.ok()) << huge;
    EXPECT_NE(r.status().message().find("too large"), std::string::npos) << r.status().message();
  }
  EXPECT_EQ(*ParseSize("1e3"), 1000u);
  EXPECT_EQ(FormatSize(1536), "1.50 KiB");
  EXPECT_EQ(FormatSize(100), "100 B");
}

TEST(GeometryTest, EveryAreaFitsAndIsAligned) {
  for (uint64_t size : {8ull << 20, 64ull << 20, 1ull << 30, 16ull << 30}) {
    FormatOptions o;
    o.size = size;
    o.max_objects = size / (64 << 10);
    auto g = ComputeGeometry(o);
    ASSERT_TRUE(g.ok()) << size << ": " << g.status().ToString();
    EXPECT_EQ(g->client_table_offset % kAreaAlign, 0u);
    EXPECT_EQ(g->index_offset % kAreaAlign, 0u);
    EXPECT_EQ(g->heap_offset % kHeapAlign, 0u);
    EXPECT_LE(g->heap_offset + g->heap_size, size);
    EXPECT_GT(g->heap_size, size / 2) << "metadata should be a small part";
    EXPECT_GE(uint64_t{g->num_shards} * g->records_per_shard, o.max_objects);
    EXPECT_LE(g->records_per_shard * 3, g->slots_per_shard * 2 + 3);  // load <= 2/3
  }
}

// A 1 TiB region (the geometry only: no file): its free-run summary sits
// between the bitmap and the page descriptors, and a region past the
// largest supported heap is refused with a message that says the limit.
TEST(GeometryTest, OneTebibyteAndTheLargestRegion) {
  FormatOptions o;
  o.size = 1ull << 40;
  o.max_objects = 1 << 20;
  auto g = ComputeGeometry(o);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_GT(g->num_pages, (1ull << 40) / kPageSize * 99 / 100);
  EXPECT_EQ(g->free_run_offset % kCacheLine, 0u);
  EXPECT_GE(g->free_run_offset, g->page_bitmap_offset + (g->num_pages + 63) / 64 * 8);
  EXPECT_GE(g->page_desc_offset,
            g->free_run_offset + FreeRunLeaves(g->num_pages) * sizeof(FreeRunNode));
  EXPECT_LE(g->heap_offset + g->heap_size, o.size);
  o.size = kMaxPages * kPageSize * 2;
  g = ComputeGeometry(o);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("largest supported"), std::string::npos)
      << g.status().message();
}

}  // namespace
}  // namespace gismo::region
