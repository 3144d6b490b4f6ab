// Checkpoint sets (gismo/checkpoint.hpp) against a manager in the test
// process: write and restore by pointer, publish replaces and deletes the
// older generation, a checkpoint cut short leaves nothing visible and
// nothing leaked once the next one is written, a stale writer loses, a
// frozen writer that wins publishes whole, a publish whose outcome is
// unknown deletes nothing, a cleanup cut short is finished by the next one,
// Drop removes a set (one whose manifest is corrupt too), and a corrupt
// chunk is caught.
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
namespace checkpoint {
class WriterTestPeer {
 public:
  template <typename Swap>
  static Status CommitWith(Writer& w, std::string_view metadata, Swap swap) {
    return w.CommitWith(metadata, swap);
  }
};
}  // namespace checkpoint

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

// A swap that timed out may have been applied (in a non-coherent region
// the owner may answer too late): once the name is seen naming this
// writer's manifest, it is published, and the cleanup is done.
TEST_F(CheckpointTest, ASwapThatFailedButWasAppliedIsPublished) {
  Write(client_, {"one"}, "one");
  {
    auto w = checkpoint::Writer::Begin(client_, "job/state");
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE(IsOk(w->AddChunk(Bytes("two"))));
    int calls = 0;
    Status s = checkpoint::WriterTestPeer::CommitWith(*w, "two", [&](const ObjectId& mid) {
      if (++calls > 1) return Status(GISMO_ERR_CONFLICT, "a new request meets its own binding");
      EXPECT_TRUE(IsOk(client_.BindName("job/state", mid)));
      return Status(GISMO_ERR_TIMEOUT, "no answer in time");
    });
    EXPECT_TRUE(IsOk(s));
  }
  auto r = checkpoint::Restore(client_, "job/state");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generation, 2u);
  EXPECT_EQ(Text(r->chunks[0]), "two");
  r = Status();
  EXPECT_EQ(Objects(), 3u) << "generation 1 was not deleted, or generation 2 was";
}

// A swap whose outcome stays unknown: the writer deletes nothing (it may
// be published yet); if it was not, the cleanup after the next publish
// deletes its objects as a loser's.
TEST_F(CheckpointTest, ASwapWhoseOutcomeStaysUnknownKeepsTheWritersObjects) {
  Write(client_, {"one"}, "one");
  const uint64_t one = Objects();
  {
    auto w = checkpoint::Writer::Begin(client_, "job/state");
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE(IsOk(w->AddChunk(Bytes("a"))));
    ASSERT_TRUE(IsOk(w->AddChunk(Bytes("b"))));
    int calls = 0;
    Status s = checkpoint::WriterTestPeer::CommitWith(*w, "x", [&](const ObjectId&) {
      ++calls;
      return Status(GISMO_ERR_TIMEOUT, "no answer in time");
    });
    EXPECT_EQ(s.code(), GISMO_ERR_TIMEOUT);
    EXPECT_NE(s.message().find("unknown"), std::string::npos) << s.ToString();
    EXPECT_GT(calls, 1) << "not asked again";
  }
  EXPECT_EQ(Objects(), one + 4) << "its claim, two chunks and manifest must stay";
  EXPECT_EQ(checkpoint::Restore(client_, "job/state")->generation, 1u);
  EXPECT_EQ(Write(client_, {"two"}, "two"), 2u);
  EXPECT_EQ(Objects(), 3u);
}

// A cleanup cut short after it deleted chunk 0 (a forward delete stopped by
// a BUSY, or killed) leaves the other chunks: the next cleanup finds them
// through the manifest, and deletes from the highest down.
TEST_F(CheckpointTest, ACleanupCutShortLeavesNothingBehind) {
  Write(client_, {"1a", "1b", "1c"}, "one");
  EXPECT_EQ(Objects(), 5u);
  uint64_t nonce = 0;
  {
    auto bound = client_.LookupName("job/state");
    ASSERT_TRUE(bound.ok()) << bound.status().ToString();
    auto m = client_.Get(ObjectId(bound->id), 0);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    auto decoded = checkpoint::Manifest::Decode(m->bytes());
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    nonce = decoded->nonce;
  }
  ASSERT_TRUE(IsOk(client_.Delete(checkpoint::ChunkId("job/state", 1, nonce, 0))));
  EXPECT_EQ(Write(client_, {"2a"}, "two"), 2u);
  for (uint64_t i = 1; i < 3; ++i) {
    EXPECT_FALSE(*client_.Contains(checkpoint::ChunkId("job/state", 1, nonce, i))) << i;
  }
  EXPECT_EQ(Objects(), 3u);
}

// Drop is the way out of a set whose manifest is corrupt or gone: it
// unbinds the name all the same, and deletes what it can find.
TEST_F(CheckpointTest, DropRemovesASetWhoseManifestIsCorruptOrGone) {
  Write(client_, {"1a", "1b"}, "one");
  const ObjectId one(client_.LookupName("job/state")->id);
  // Generation 2, whose manifest is corrupt (its metadata changed after its
  // checksum was computed), published.
  const uint64_t nonce = 77;
  std::vector<uint8_t> bytes =
      checkpoint::Manifest{
          2, nonce, {{checkpoint::ChunkId("job/state", 2, nonce, 0), 2, 0}}, "meta"}
          .Encode();
  bytes[bytes.size() - 16] ^= 1;
  std::vector<uint8_t> claim(8);
  std::memcpy(claim.data(), &nonce, 8);
  ASSERT_TRUE(IsOk(client_.Put(checkpoint::ClaimId("job/state", 2, 0), claim)));
  ASSERT_TRUE(IsOk(client_.Put(checkpoint::ChunkId("job/state", 2, nonce, 0), "2a")));
  const ObjectId two = checkpoint::ManifestId("job/state", 2, nonce);
  ASSERT_TRUE(IsOk(client_.Put(two, bytes)));
  ASSERT_TRUE(IsOk(client_.SwapName("job/state", one, two)));
  EXPECT_EQ(checkpoint::Restore(client_, "job/state").status().code(), GISMO_ERR_BAD_REGION);
  EXPECT_EQ(checkpoint::Writer::Begin(client_, "job/state").status().code(), GISMO_ERR_BAD_REGION);
  EXPECT_TRUE(IsOk(checkpoint::Drop(client_, "job/state")));
  EXPECT_EQ(client_.LookupName("job/state").status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(Objects(), 0u) << "its header names generation 2 and gives its id: all can go";
  // Bound to an object that is no manifest of the set, or to one deleted:
  // unbound, and nothing else is found (that object stays).
  const ObjectId junk = ObjectId::FromName("junk");
  ASSERT_TRUE(IsOk(client_.Put(junk, "not a manifest")));
  ASSERT_TRUE(IsOk(client_.BindName("job/state", junk)));
  EXPECT_TRUE(IsOk(checkpoint::Drop(client_, "job/state")));
  EXPECT_EQ(client_.LookupName("job/state").status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(Objects(), 1u);
  ASSERT_TRUE(IsOk(client_.BindName("job/state", junk)));
  ASSERT_TRUE(IsOk(client_.Delete(junk)));
  EXPECT_TRUE(IsOk(checkpoint::Drop(client_, "job/state")));
  EXPECT_EQ(client_.LookupName("job/state").status().code(), GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT_EQ(Write(client_, {"again"}, "again"), 1u);
}

// A writer whose manifest the winner of its generation deleted (the
// winner's cleanup of the losers) before its own swap ran learns it lost
// (CONFLICT), as when its swap meets the winner's binding, not that some
// object was not found.
TEST_F(CheckpointTest, ALoserWhoseManifestTheWinnerDeletedGetsConflict) {
  Write(client_, {"one"}, "one");
  const ObjectId one(client_.LookupName("job/state")->id);
  Client other = MustConnect(mgr_.address());
  auto winner = checkpoint::Writer::Begin(client_, "job/state");
  auto loser = checkpoint::Writer::Begin(other, "job/state");
  ASSERT_TRUE(winner.ok() && loser.ok());
  ASSERT_TRUE(IsOk(winner->AddChunk(Bytes("won"))));
  ASSERT_TRUE(IsOk(loser->AddChunk(Bytes("lost"))));
  Status s = checkpoint::WriterTestPeer::CommitWith(*loser, "lost", [&](const ObjectId& mid) {
    EXPECT_TRUE(IsOk(winner->Commit("won")));  // publishes, then deletes the loser's manifest
    return other.SwapName("job/state", one, mid);
  });
  EXPECT_EQ(s.code(), GISMO_ERR_CONFLICT) << s.ToString();
  auto r = checkpoint::Restore(client_, "job/state");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->metadata, "won");
}

// A commit whose swap was refused for now (BUSY: a lock stayed busy) can be
// tried again: its manifest is not put twice (that failed with
// OBJECT_EXISTS on every try), and one with other metadata replaces it.
TEST_F(CheckpointTest, ACommitRefusedForNowCanBeTriedAgain) {
  Write(client_, {"one"}, "one");
  auto w = checkpoint::Writer::Begin(client_, "job/state");
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(IsOk(w->AddChunk(Bytes("two"))));
  Status s = checkpoint::WriterTestPeer::CommitWith(
      *w, "first try", [](const ObjectId&) { return Status(GISMO_ERR_BUSY, "try again later"); });
  EXPECT_EQ(s.code(), GISMO_ERR_BUSY) << s.ToString();
  s = checkpoint::WriterTestPeer::CommitWith(
      *w, "first try", [](const ObjectId&) { return Status(GISMO_ERR_BUSY, "try again later"); });
  EXPECT_EQ(s.code(), GISMO_ERR_BUSY) << s.ToString();
  ASSERT_TRUE(IsOk(w->Commit("second try")));
  auto r = checkpoint::Restore(client_, "job/state");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generation, 2u);
  EXPECT_EQ(r->metadata, "second try");
  EXPECT_EQ(Text(r->chunks[0]), "two");
  r = Status();
  EXPECT_EQ(Objects(), 3u) << "one chunk, one manifest, one claim";
}

// A set whose published manifest was deleted outside the protocol stays so
// until Drop: Begin and Restore say that (they said TIMEOUT, and BUSY
// "kept changing", though nothing changed).
TEST_F(CheckpointTest, AManifestDeletedOutsideTheProtocolIsNamed) {
  Write(client_, {"one"}, "one");
  const ObjectId one(client_.LookupName("job/state")->id);
  ASSERT_TRUE(IsOk(client_.Delete(one)));
  for (Status s : {checkpoint::Writer::Begin(client_, "job/state").status(),
                   checkpoint::Restore(client_, "job/state").status()}) {
    EXPECT_EQ(s.code(), GISMO_ERR_BAD_REGION) << s.ToString();
    EXPECT_NE(s.message().find("Drop removes the set"), std::string::npos) << s.ToString();
  }
  EXPECT_TRUE(IsOk(checkpoint::Drop(client_, "job/state")));
  EXPECT_EQ(Write(client_, {"again"}, "again"), 1u);
}

// A writer that committed, or was moved from, writes nothing more: a
// chunk after the commit would belong to no manifest.
TEST_F(CheckpointTest, AWriterThatCommittedOrWasMovedFromWritesNothing) {
  auto w = checkpoint::Writer::Begin(client_, "job/state");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE(IsOk(w->AddChunk(Bytes("one"))));
  ASSERT_TRUE(IsOk(w->Commit("m")));
  const uint64_t objects = Objects();
  EXPECT_EQ(w->AddChunk(Bytes("two")).code(), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(w->Commit("again").code(), GISMO_ERR_INVALID_ARGUMENT);
  auto next = checkpoint::Writer::Begin(client_, "job/state");
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  checkpoint::Writer moved = std::move(*next);
  EXPECT_EQ(next->AddChunk(Bytes("three")).code(), GISMO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(next->Commit().code(), GISMO_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(IsOk(moved.AddChunk(Bytes("three"))));
  ASSERT_TRUE(IsOk(moved.Commit("m2")));
  EXPECT_EQ(Objects(), objects);  // generation 2 replaced generation 1
  EXPECT_EQ(Text(checkpoint::Restore(client_, "job/state")->chunks[0]), "three");
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
  // Generations run from 1 and stop well before the next one would wrap.
  for (uint64_t g : {uint64_t{0}, checkpoint::kMaxGeneration + 1, ~uint64_t{0}}) {
    EXPECT_EQ(
        checkpoint::Manifest::Decode(checkpoint::Manifest{g, 9, {}, ""}.Encode()).status().code(),
        GISMO_ERR_BAD_REGION)
        << g;
  }
  // A manifest whose checksum of a chunk does not match the chunk.
  ASSERT_TRUE(IsOk(client_.Put(ObjectId::FromName("c"), "data")));
  checkpoint::Manifest m{1, 1, {{ObjectId::FromName("c"), 4, 12345}}, ""};
  ASSERT_TRUE(IsOk(client_.Put(ObjectId::FromName("m"), m.Encode())));
  ASSERT_TRUE(IsOk(client_.BindName("bad", ObjectId::FromName("m"))));
  auto r = checkpoint::Restore(client_, "bad");
  EXPECT_EQ(r.status().code(), GISMO_ERR_BAD_REGION) << r.status().ToString();
}

// The next generation would be out of range (a manifest no reader
// accepts): the writer is refused before it writes anything.
TEST_F(CheckpointTest, ASetAtItsLastGenerationTakesNoNewWriter) {
  const ObjectId manifest = ObjectId::FromName("last-manifest");
  ASSERT_TRUE(IsOk(client_.Put(
      manifest, checkpoint::Manifest{checkpoint::kMaxGeneration, 9, {}, "last"}.Encode())));
  ASSERT_TRUE(IsOk(client_.BindName("old/set", manifest)));
  auto restored = checkpoint::Restore(client_, "old/set");
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(restored->generation, checkpoint::kMaxGeneration);
  const uint64_t objects = Objects();
  auto w = checkpoint::Writer::Begin(client_, "old/set");
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), GISMO_ERR_LIMIT) << w.status().ToString();
  EXPECT_EQ(Objects(), objects);
}

// A restore holds a reference to each chunk: past the client's limit it is
// LIMIT naming the chunk count (it was BUSY, "kept changing", after sixteen
// tries), and it holds nothing after.
TEST(CheckpointLimitTest, ARestoreOfMoreChunksThanAClientMayHoldSaysSo) {
  manager::ManagerOptions o = testing::InProcessManagerOptions();
  o.format.held_capacity = 16;
  InProcessManager mgr(o);
  ASSERT_TRUE(IsOk(mgr.Start()));
  Client c = MustConnect(mgr.address());
  auto w = checkpoint::Writer::Begin(c, "many/chunks");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(IsOk(w->AddChunk(Bytes(std::string(8, 'a' + i % 26)))));
  ASSERT_TRUE(IsOk(w->Commit("")));
  auto r = checkpoint::Restore(c, "many/chunks");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), GISMO_ERR_LIMIT) << r.status().ToString();
  EXPECT_NE(r.status().message().find("has 40 chunks"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(c.Usage()->object_count, 42u);  // 40 chunks, manifest, claim
}

}  // namespace
}  // namespace gismo
