// Eviction (src/store/evict.cc) directly on a region: a full store makes
// room by evicting sealed, unheld, evictable objects, in CLOCK order, and
// never anything else; each eviction is a delete with its event.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "region_fixture.h"
#include "store/event_ring.h"
#include "store/store.h"

namespace gismo::store {
namespace {

using gismo::testing::IdFrom;

class EvictTest : public gismo::testing::RegionFixture {
 protected:
  // Creates, seals and releases an object of `size` bytes.
  Status Put(Store& s, const gismo_id_t& id, uint64_t size, uint32_t flags) {
    void* data = nullptr;
    if (Status st = s.Create(id, size, nullptr, 0, flags, &data); !st.ok()) return st;
    std::memset(data, static_cast<int>(id.bytes[0]), size);
    if (Status st = s.Seal(id); !st.ok()) return st;
    return s.Release(id);
  }
  bool Exists(Store& s, const gismo_id_t& id) {
    bool c = false;
    EXPECT_TRUE(s.Contains(id, &c).ok());
    return c;
  }
  uint64_t Evictions() {
    gismo_usage_t u{};
    EXPECT_TRUE(Activate(7)->Usage(&u).ok());
    return u.evictions;
  }
};

constexpr uint32_t kEvictable = GISMO_CREATE_EVICTABLE;

TEST_F(EvictTest, FullStoreEvictsEvictableObjectsInsteadOfFailing) {
  auto s = Activate(1);
  const uint64_t heap = region_->heap_size();
  const uint64_t size = 1 << 20;
  const uint64_t n = 3 * heap / size;  // three times what fits
  for (uint64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(Put(*s, IdFrom(i + 1), size, kEvictable).ok()) << "object " << i;
  }
  gismo_usage_t u{};
  ASSERT_TRUE(s->Usage(&u).ok());
  EXPECT_GE(u.evictions, n - heap / size);
  EXPECT_EQ(u.evicted_bytes, u.evictions * size);
  EXPECT_EQ(u.sealed_count + u.evictions, n);
  // The latest object is always there: it was made room for.
  EXPECT_TRUE(Exists(*s, IdFrom(n)));
  ExpectSound();
}

TEST_F(EvictTest, WithoutTheFlagAFullStoreStillFails) {
  auto s = Activate(1);
  Status st;
  uint64_t i = 0;
  for (; i < 1000 && st.ok(); ++i) st = Put(*s, IdFrom(i + 1), 1 << 20, 0);
  EXPECT_EQ(st.code(), GISMO_ERR_OUT_OF_MEMORY);
  EXPECT_NE(st.message().find("nothing could be evicted"), std::string::npos) << st.ToString();
  EXPECT_EQ(Evictions(), 0u);
  ExpectSound();
}

TEST_F(EvictTest, NeverEvictsHeldUnsealedOrNonEvictableObjects) {
  auto s = Activate(1);
  auto reader = Activate(2);
  const uint64_t size = 1 << 20;
  const gismo_id_t held = IdFrom(1001), unsealed = IdFrom(1002), pinned = IdFrom(1003);
  ASSERT_TRUE(Put(*s, held, size, kEvictable).ok());
  GetResult g;
  ASSERT_TRUE(reader->TryGet(held, &g).ok());
  ASSERT_TRUE(g.found);
  void* data = nullptr;
  ASSERT_TRUE(s->Create(unsealed, size, nullptr, 0, kEvictable, &data).ok());
  ASSERT_TRUE(Put(*s, pinned, size, 0).ok());
  // Fill and churn the rest with evictable objects, several times over.
  Status st;
  for (uint64_t i = 0; i < 500 && st.ok(); ++i) st = Put(*s, IdFrom(i + 1, 7), size, kEvictable);
  ASSERT_TRUE(st.ok()) << st.ToString();  // evictable objects make room for their kind
  EXPECT_GT(Evictions(), 0u);
  EXPECT_TRUE(Exists(*s, held));
  EXPECT_TRUE(Exists(*s, pinned));
  gismo_object_info_t info{};
  ASSERT_TRUE(s->Stat(unsealed, &info).ok());
  EXPECT_EQ(info.state, GISMO_STATE_UNSEALED);
  // The held object's bytes never changed under its reader.
  const auto* bytes = static_cast<const uint8_t*>(g.buffer.data);
  for (uint64_t i = 0; i < size; i += 4096) ASSERT_EQ(bytes[i], held.bytes[0]);
  // Its flags show only the public bits (not the CLOCK reference bit).
  ASSERT_TRUE(s->Stat(held, &info).ok());
  EXPECT_EQ(info.flags, kEvictable);
  // An explicit eviction of everything leaves exactly those three.
  EvictResult got;
  ASSERT_TRUE(s->Evict({~0ull, 0, -1}, &got).ok());
  uint64_t left = 0;
  ASSERT_TRUE(s->ForEach([&](const gismo_object_info_t&) { ++left; }).ok());
  EXPECT_EQ(left, 3u);
  ExpectSound();
}

TEST_F(EvictTest, ClockSparesWhatWasUsedSinceTheHandPassed) {
  auto s = Activate(1);
  auto reader = Activate(2);
  const uint64_t n = 64;
  for (uint64_t i = 0; i < n; ++i) ASSERT_TRUE(Put(*s, IdFrom(i + 1), 1000, kEvictable).ok());
  // New objects start referenced: a first sweep clears them all, then
  // evicts in hand order.
  EvictResult first;
  ASSERT_TRUE(s->Evict({0, n / 4, -1}, &first).ok());
  EXPECT_EQ(first.objects, n / 4);
  std::vector<gismo_id_t> live, used, unused;
  for (uint64_t i = 0; i < n; ++i) {
    if (Exists(*s, IdFrom(i + 1))) live.push_back(IdFrom(i + 1));
  }
  ASSERT_EQ(live.size(), n - n / 4);
  // Use every other survivor: by a get (then released) or by touch.
  for (size_t k = 0; k < live.size(); ++k) {
    if (k % 2 == 1) {
      unused.push_back(live[k]);
      continue;
    }
    used.push_back(live[k]);
    if (k % 4 == 0) {
      ASSERT_TRUE(s->Touch(live[k]).ok());
    } else {
      GetResult g;
      ASSERT_TRUE(reader->TryGet(live[k], &g).ok());
      ASSERT_TRUE(g.found);
      ASSERT_TRUE(reader->Release(live[k]).ok());
    }
  }
  // Evicting as many objects as were left unused takes exactly those.
  EvictResult second;
  ASSERT_TRUE(s->Evict({0, unused.size(), -1}, &second).ok());
  EXPECT_EQ(second.objects, unused.size());
  for (const auto& id : used) EXPECT_TRUE(Exists(*s, id));
  for (const auto& id : unused) EXPECT_FALSE(Exists(*s, id));
  EXPECT_EQ(s->Touch(IdFrom(n + 100)).code(), GISMO_ERR_OBJECT_NOT_FOUND);
  ExpectSound();
}

TEST_F(EvictTest, EvictionIsADeleteWithAnEvictedEvent) {
  auto s = Activate(1, /*node=*/3);
  const gismo_id_t a = IdFrom(1), b = IdFrom(2);
  ASSERT_TRUE(Put(*s, a, 100, kEvictable).ok());
  ASSERT_TRUE(Put(*s, b, 100, 0).ok());
  ASSERT_TRUE(s->Delete(b).ok());
  uint64_t cursor = region_->event_ring().head.load();
  EvictResult got;
  ASSERT_TRUE(s->Evict({1, 0, -1}, &got).ok());
  EXPECT_EQ(got.objects, 1u);
  EXPECT_EQ(got.bytes, 128u);  // its block
  RingEvent ev;
  ASSERT_EQ(ReadEvent(*region_, &cursor, &ev), RingRead::kEvent);
  EXPECT_EQ(ev.kind, region::EventKind::kDeleted);
  EXPECT_EQ(ev.reason, region::EventReason::kEvicted);
  EXPECT_EQ(std::memcmp(ev.id.bytes, a.bytes, GISMO_ID_SIZE), 0);
  EXPECT_EQ(ev.node, 3u);
  EXPECT_EQ(ReadEvent(*region_, &cursor, &ev), RingRead::kNothing);
  auto evicted = s->TakeEvicted();
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(std::memcmp(evicted[0].bytes, a.bytes, GISMO_ID_SIZE), 0);
  EXPECT_FALSE(Exists(*s, a));
  // A client's delete carries no reason.
  ASSERT_TRUE(Put(*s, b, 100, 0).ok());
  ASSERT_TRUE(s->Delete(b).ok());
  cursor = region_->event_ring().head.load() - 1;
  ASSERT_EQ(ReadEvent(*region_, &cursor, &ev), RingRead::kEvent);
  EXPECT_EQ(ev.reason, region::EventReason::kNone);
  ExpectSound();
}

TEST_F(EvictTest, AFullIndexShardEvictsFromThatShard) {
  region::FormatOptions o;
  o.max_objects = 64;
  TearDown();
  Format(o);
  auto s = Activate(1);
  // Far more small objects than the index holds: each create whose shard is
  // full evicts there.
  for (uint64_t i = 0; i < 1000; ++i) {
    ASSERT_TRUE(Put(*s, IdFrom(i + 1), 64, kEvictable).ok()) << "object " << i;
  }
  EXPECT_GT(Evictions(), 900u);
  ExpectSound();
}

TEST_F(EvictTest, UnknownFlagBitsAreRefused) {
  auto s = Activate(1);
  void* data = nullptr;
  // The CLOCK bit is the store's own, not a create flag.
  EXPECT_EQ(s->Create(IdFrom(1), 8, nullptr, 0, region::kObjectFlagReferenced, &data).code(),
            GISMO_ERR_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace gismo::store
