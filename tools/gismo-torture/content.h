// Checksummed object content for failure tests.
//
// An object is named by (tag, key): its id is ObjectId::FromName of
// "torture/TAG/KEY", so a small key space makes workers collide on purpose.
// Each incarnation of a key has a random 64-bit generation. The data is a
// pure function of (key, generation, size); the metadata is a Meta record
// holding the XXH3-64 of the data. So any process can verify any object it
// reads without shared state: the metadata must name the key of the id, and
// the data must hash to the recorded checksum and equal the regenerated
// content.
#ifndef GISMO_TOOLS_TORTURE_CONTENT_H_
#define GISMO_TOOLS_TORTURE_CONTENT_H_

#include <xxhash.h>

#include <cstdint>
#include <cstring>
#include <gismo/gismo.hpp>
#include <string>
#include <vector>

namespace gismo::torture {

constexpr uint64_t kMetaMagic = 0x3174727467736d67ull;  // "gmsgtrt1"

struct Meta {
  uint64_t magic;
  uint64_t key;
  uint64_t generation;
  uint64_t size;
  uint64_t checksum;  // XXH3-64 of the data
};

inline uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A quarter of the keys are created evictable (GISMO_CREATE_EVICTABLE): the
// store may evict their sealed incarnations when nobody holds them, so "no
// sealed object lost" holds for the other keys only; for these, what is
// present must still be a sealed, never deleted incarnation, and what a
// worker holds is never evicted (its bytes are verified before release).
inline bool KeyEvictable(uint64_t key) { return key % 4 == 3; }
inline uint32_t KeyFlags(uint64_t key) { return KeyEvictable(key) ? GISMO_CREATE_EVICTABLE : 0; }

inline ObjectId KeyId(const std::string& tag, uint64_t key) {
  return ObjectId::FromName("torture/" + tag + "/" + std::to_string(key));
}

// Word i of the content of (key, generation) depends only on them and i.
inline void Fill(uint64_t key, uint64_t generation, uint8_t* data, size_t size) {
  const uint64_t base = Mix(key * 0x100000001b3ull ^ generation);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t w = Mix(base + i / 8);
    std::memcpy(data + i, &w, 8);
  }
  if (i < size) {
    uint64_t w = Mix(base + i / 8);
    std::memcpy(data + i, &w, size - i);
  }
}

inline Meta MakeMeta(uint64_t key, uint64_t generation, const uint8_t* data, size_t size) {
  return Meta{kMetaMagic, key, generation, size, XXH3_64bits(data, size)};
}

// Empty if the object (data, metadata) is a correct incarnation of `key`;
// otherwise what is wrong. `full` also regenerates the content and compares
// every byte. On success *generation is the incarnation's generation.
inline std::string Verify(uint64_t key, const uint8_t* data, size_t size, const uint8_t* meta,
                          size_t meta_size, bool full, uint64_t* generation = nullptr) {
  if (meta_size != sizeof(Meta)) {
    return "metadata is " + std::to_string(meta_size) + " bytes, expected " +
           std::to_string(sizeof(Meta));
  }
  Meta m;
  std::memcpy(&m, meta, sizeof m);
  if (m.magic != kMetaMagic) return "metadata magic is wrong";
  if (m.key != key) {
    return "metadata names key " + std::to_string(m.key) + ", the id is key " + std::to_string(key);
  }
  if (m.size != size) {
    return "data is " + std::to_string(size) + " bytes, metadata says " + std::to_string(m.size);
  }
  if (generation) *generation = m.generation;
  if (XXH3_64bits(data, size) != m.checksum) {
    return "data checksum mismatch (generation " + std::to_string(m.generation) + ")";
  }
  if (full) {
    std::vector<uint8_t> want(size);
    Fill(key, m.generation, want.data(), size);
    if (std::memcmp(want.data(), data, size) != 0) {
      return "data differs from the content of generation " + std::to_string(m.generation);
    }
  }
  return {};
}

}  // namespace gismo::torture

#endif  // GISMO_TOOLS_TORTURE_CONTENT_H_
