// A region formatted non-coherent (--coherence non-coherent, issue #14):
// formatted and readable, refused by the manager and by every client with a
// message that says what this build lacks (doc/noncoherent.md).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <gismo/gismo.hpp>
#include <iterator>

#include "region/cache_lines.h"
#include "region/region.h"
#include "testing/in_process_manager.h"
#include "testing/manager_process.h"
#include "testing/process.h"

namespace gismo {
namespace {

using region::CoherenceMode;

void ExpectRefusal(const Status& s, const std::string& path) {
  EXPECT_EQ(s.code(), GISMO_ERR_UNSUPPORTED) << s.ToString();
  for (const std::string& part :
       {"'" + path + "'", std::string("non-coherent (CXL 2.0)"), std::string("request ring"),
        std::string("single-writer protocol"), std::string("doc/noncoherent.md"),
        std::string("--coherence coherent")}) {
    EXPECT_NE(s.message().find(part), std::string::npos)
        << "no '" << part << "' in " << s.message();
  }
}

TEST(NonCoherent, NamesOfTheModes) {
  EXPECT_STREQ(region::CoherenceModeName(1), "coherent");
  EXPECT_STREQ(region::CoherenceModeName(2), "non-coherent");
  EXPECT_STREQ(region::CoherenceModeName(7), "unknown");
}

// The manager formats the region as asked, then refuses to serve it; the
// region stays, readable (gismo-fsck), and says what it is.
TEST(NonCoherent, ManagerFormatsThenRefusesToServe) {
  ASSERT_TRUE(region::NonCoherentSupported());
  manager::ManagerOptions o = testing::InProcessManagerOptions(32ull << 20);
  o.format.coherence = CoherenceMode::kNonCoherent;
  const std::string path = o.region_path;
  testing::InProcessManager m(o);  // removes the region when it goes
  ExpectRefusal(m.Start(), path);
  auto r = region::Region::Open(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->sb().coherence_mode, static_cast<uint32_t>(CoherenceMode::kNonCoherent));
  EXPECT_STREQ(region::CoherenceModeName((*r)->sb().coherence_mode), "non-coherent");
}

// A client refuses to map a non-coherent region whoever serves it: its
// writes would corrupt the region on such memory.
TEST(NonCoherent, ClientRefusesTheRegion) {
  testing::InProcessManager coherent;
  ASSERT_TRUE(coherent.Start().ok());
  const std::string path = "/dev/shm/" + testing::UniqueName("noncoherent");
  region::FormatOptions fo;
  fo.size = 16ull << 20;
  fo.coherence = CoherenceMode::kNonCoherent;
  ASSERT_TRUE(region::Region::Format(path, fo).ok());
  Client::ConnectOptions co;
  co.address = coherent.address();
  co.region_path = path;  // "this host sees the region here"
  auto c = Client::ConnectWith(co);
  ASSERT_FALSE(c.ok());
  ExpectRefusal(c.status(), path);
  unlink(path.c_str());
}

// gismo-manager --coherence non-coherent: accepted at format (this build has
// the mode's flushes), then the process exits 1 with the refusal.
TEST(NonCoherent, ManagerProgramSaysWhatIsMissing) {
  testing::ManagerProcessOptions mo;
  mo.binary = GISMO_MANAGER_BIN;
  mo.region = "/dev/shm/" + testing::UniqueName("noncoherent");
  mo.size = "16MiB";
  mo.extra_args = {"--coherence", "non-coherent"};
  mo.stderr_path = mo.region + ".err";
  mo.ready_timeout_s = 20;
  {
    testing::ManagerProcess m(mo);
    EXPECT_FALSE(m.Start()) << "a manager served a non-coherent region";
  }
  std::ifstream err(mo.stderr_path);
  const std::string text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("formatted for non-coherent (CXL 2.0) memory"), std::string::npos) << text;
  EXPECT_NE(text.find("doc/noncoherent.md"), std::string::npos) << text;
  unlink(mo.stderr_path.c_str());
  unlink(mo.region.c_str());
}

}  // namespace
}  // namespace gismo
