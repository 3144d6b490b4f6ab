// Checkpoint sets (gismo/checkpoint.hpp) against a manager in the test
// process: write and restore by pointer, publish replaces and deletes the
// older generation, a checkpoint cut short leaves nothing visible and
// nothing leaked once the next one is written, a stale writer loses, a
// frozen writer that wins publishes whole, Drop removes a set, and a
// corrupt chunk is caught.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <gismo/checkpoint.hpp>
#include <string>
#include <vector>

#include "test_util.h"
#include "testing/in_process_manager.h"

namespace gismo {
namespace {

using testing::InProcessManager;
using testing::IsOk;
using testing::MustConnect;

std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }

std::string Text(const Buffer& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(IsOk(mgr_.Start()));
    client_ = MustConnect(mgr_.address());
  }
  // Writes a checkpoint of `chunks` with `meta`; returns its generation.
  uint64_t Write(Client& c, const std::vector<std::string>& chunks, const std::string& meta) {
    auto w = checkpoint::Writer::Begin(c, "job/state");
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    if (!w.ok()) return 0;
    for (const auto& ch : chunks) EXPECT_TRUE(IsOk(w->AddChunk(Bytes(ch))));
    EXPECT_TRUE(IsOk(w->Commit(meta)));
    return w->generation();
  }
  uint64_t Objects() { return client_.Usage()->object_count; }
  InProcessManager mgr_;
  Client client_;
};

TEST_F(CheckpointTest, WriteAndRestoreByPointer) {
  EXPECT_EQ(checkpoint::Restore(client_, "job/state").status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(Write(client_, {"alpha", std::string(100000, 'b'), ""}, "offset=42"), 1u);
  Client standby = MustConnect(mgr_.address());
  auto r = checkpoint::Restore(standby, "job/state");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generation, 1u);
  EXPECT_EQ(r->metadata, "offset=42");
  ASSERT_EQ(r->chunks.size(), 3u);
  EXPECT_EQ(Text(r->chunks[0]), "alpha");
  EXPECT_EQ(r->chunks[1].size(), 100000u);
  EXPECT_EQ(r->chunks[2].size(), 0u);
  EXPECT_TRUE(standby.InRegion(r->chunks[1].data(), r->chunks[1].size()));  // by pointer
}

// Each publish replaces the previous generation whole, and deletes it: the
// store holds one checkpoint (its chunks and manifest), not all of them.
TEST_F(CheckpointTest, PublishReplacesAndDeletesTheOlder) {
  Write(client_, {"1a", "1b"}, "one");
  const uint64_t one = Objects();
  EXPECT_EQ(one, 4u);  // two chunks, the manifest, the claim
  for (int g = 2; g <= 5; ++g) {
    EXPECT_EQ(Write(client_, {std::to_string(g) + "a", std::to_string(g) + "b"}, "m"), uint64_t(g));
    EXPECT_EQ(Objects(), one);
  }
  auto r = checkpoint::Restore(client_, "job/state");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->generation, 5u);
  EXPECT_EQ(Text(r->chunks[0]), "5a");
  // A reader holding generation 5 keeps it while 6 replaces it.
  Write(client_, {"6a"}, "six");
  EXPECT_EQ(Text(r->chunks[0]), "5a");
  EXPECT_EQ(checkpoint::Restore(client_, "job/state")->generation, 6u);
}

// A writer killed in the middle of a checkpoint (chunks sealed, one being
// written, the manifest never published): readers still restore the
// previous one; the next writer removes the leftovers, so nothing leaks.
TEST_F(CheckpointTest, CheckpointCutShortLeavesNothingVisibleOrLeaked) {
  Write(client_, {"old"}, "old");
  const uint64_t before = Objects();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto c = Client::Connect(mgr_.address());
    if (!c.ok()) _exit(1);
    auto w = checkpoint::Writer::Begin(*c, "job/state");
    if (!w.ok()) _exit(2);
    if (!w->AddChunk(Bytes("new-0")).ok() || !w->AddChunk(Bytes("new-1")).ok()) _exit(3);
    auto unsealed =
        c->Create(checkpoint::ChunkId("job/state", w->generation(), w->nonce(), 2), 1000);
    if (!unsealed.ok()) _exit(4);
    kill(getpid(), SIGKILL);  // dies mid-checkpoint: no destructor runs
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  auto r = checkpoint::Restore(client_, "job/state");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generation, 1u);
  EXPECT_EQ(r->metadata, "old");
  r = Status();
  // The recovery aborts the unsealed chunk; the sealed ones stay until the
  // next writer, which finds them by their ids.
  for (int i = 0; i < 10000 && client_.Usage()->client_count > 1; ++i) usleep(1000);
  EXPECT_EQ(Objects(), before + 3);  // its claim and two sealed chunks
  EXPECT_EQ(Write(client_, {"next"}, "next"), 2u);
  EXPECT_EQ(Objects(), 3u) << "leftovers of the cut checkpoint were leaked";
  EXPECT_EQ(checkpoint::Restore(client_, "job/state")->metadata, "next");
}

// A writer that began before another published loses its swap and
// publishes nothing; what it wrote is deleted.
TEST_F(CheckpointTest, StaleWriterLoses) {
  Write(client_, {"one"}, "one");
  Client other = MustConnect(mgr_.address());
  {
    auto stale = checkpoint::Writer::Begin(client_, "job/state");
    ASSERT_TRUE(stale.ok());
    ASSERT_TRUE(IsOk(stale->AddChunk(Bytes("stale"))));
    // Meanwhile the standby took over: it writes generation 2 itself and
    // publishes (then deletes what the stale writer wrote).
    auto w = checkpoint::Writer::Begin(other, "job/state");
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_EQ(w->generation(), 2u);
    ASSERT_TRUE(IsOk(w->AddChunk(Bytes("fresh"))));
    ASSERT_TRUE(IsOk(w->Commit("fresh")));
    Status s = stale->Commit("stale");
    EXPECT_EQ(s.code(), GISMO_ERR_CONFLICT) << s.ToString();
  }
  auto r = checkpoint::Restore(client_, "job/state");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->metadata, "fresh");
  EXPECT_EQ(Text(r->chunks[0]), "fresh");
  r = Status();
  EXPECT_EQ(Objects(), 3u);
}

// A writer that froze mid-checkpoint and thaws after a standby began the
// same generation may still publish first: what it publishes is whole (the
// standby's Begin deleted none of it), the standby loses, and the losers'
// objects go.
TEST_F(CheckpointTest, AFrozenWriterThatPublishesFirstPublishesItWhole) {
  Write(client_, {"one"}, "one");
  Client other = MustConnect(mgr_.address());
  {
    auto frozen = checkpoint::Writer::Begin(client_, "job/state");
    ASSERT_TRUE(frozen.ok()) << frozen.status().ToString();
    ASSERT_TRUE(IsOk(frozen->AddChunk(Bytes("frozen-0"))));
    auto standby = checkpoint::Writer::Begin(other, "job/state");
    ASSERT_TRUE(standby.ok()) << standby.status().ToString();
    EXPECT_EQ(standby->generation(), frozen->generation());
    ASSERT_TRUE(IsOk(standby->AddChunk(Bytes("standby"))));
    ASSERT_TRUE(IsOk(frozen->AddChunk(Bytes("frozen-1"))));  // it thaws
    ASSERT_TRUE(IsOk(frozen->Commit("frozen")));
    Status s = standby->Commit("standby");
    EXPECT_EQ(s.code(), GISMO_ERR_CONFLICT) << s.ToString();
    auto r = checkpoint::Restore(other, "job/state");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->generation, 2u);
    EXPECT_EQ(r->metadata, "frozen");
    ASSERT_EQ(r->chunks.size(), 2u);
    EXPECT_EQ(Text(r->chunks[1]), "frozen-1");
  }
  EXPECT_EQ(Objects(), 4u);  // two chunks, the manifest, the claim
  EXPECT_EQ(Write(other, {"three"}, "three"), 3u);
  EXPECT_EQ(Objects(), 3u);
}

// Drop removes a set whole: its name, the published generation, and the
// claims and objects of writers that never published. A generation whose
// claims are all taken refuses another writer, until Drop.
TEST_F(CheckpointTest, DropRemovesEverythingAndFullClaimsAreRefused) {
  Write(client_, {"1a", "1b"}, "one");
  {
    auto abandoned = checkpoint::Writer::Begin(client_, "job/state");
    ASSERT_TRUE(abandoned.ok());
    ASSERT_TRUE(IsOk(abandoned->AddChunk(Bytes("abandoned"))));
    std::vector<uint8_t> nonce(8, 1);
    for (uint64_t k = 1; k < checkpoint::kMaxClaims; ++k) {
      nonce[0] = static_cast<uint8_t>(k);
      nonce[1] = static_cast<uint8_t>(k >> 8);
      ASSERT_TRUE(IsOk(client_.Put(checkpoint::ClaimId("job/state", 2, k), nonce)));
    }
    auto refused = checkpoint::Writer::Begin(client_, "job/state");
    EXPECT_EQ(refused.status().code(), GISMO_ERR_BUSY) << refused.status().ToString();
    EXPECT_TRUE(IsOk(checkpoint::Drop(client_, "job/state")));
    EXPECT_EQ(Objects(), 0u);
    EXPECT_EQ(client_.LookupName("job/state").status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  }  // the abandoned writer's abort finds nothing left to delete
  EXPECT_EQ(Objects(), 0u);
  EXPECT_TRUE(IsOk(checkpoint::Drop(client_, "job/state")));  // no such set: nothing to do
  EXPECT_EQ(Write(client_, {"again"}, "again"), 1u);
}

TEST_F(CheckpointTest, CorruptManifestAndChunkAreCaught) {
  std::vector<uint8_t> bytes = checkpoint::Manifest{7, 9, {}, "meta"}.Encode();
  EXPECT_TRUE(checkpoint::Manifest::Decode(bytes).ok());
  for (size_t cut : {size_t{0}, size_t{8}, bytes.size() - 8}) {
    EXPECT_EQ(checkpoint::Manifest::Decode(std::span(bytes.data(), cut)).status().code(),
              GISMO_ERR_BAD_REGION);
  }
  bytes[24] ^= 1;  // the chunk count
  EXPECT_EQ(checkpoint::Manifest::Decode(bytes).status().code(), GISMO_ERR_BAD_REGION);
  // A manifest whose checksum of a chunk does not match the chunk.
  ASSERT_TRUE(IsOk(client_.Put(ObjectId::FromName("c"), "data")));
  checkpoint::Manifest m{1, 1, {{ObjectId::FromName("c"), 4, 12345}}, ""};
  ASSERT_TRUE(IsOk(client_.Put(ObjectId::FromName("m"), m.Encode())));
  ASSERT_TRUE(IsOk(client_.BindName("bad", ObjectId::FromName("m"))));
  auto r = checkpoint::Restore(client_, "bad");
  EXPECT_EQ(r.status().code(), GISMO_ERR_BAD_REGION) << r.status().ToString();
}

}  // namespace
}  // namespace gismo
