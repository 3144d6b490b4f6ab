#include "protocol/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace gismo::protocol {

namespace {

// HMAC-SHA-256 of the concatenation of `parts`.
Mac Hmac(const void* key, size_t key_size, std::initializer_list<std::string_view> parts) {
  std::string msg;
  for (std::string_view p : parts) msg.append(p);
  Mac out{};
  unsigned int n = 0;
  HMAC(EVP_sha256(), key, static_cast<int>(key_size), reinterpret_cast<const uint8_t*>(msg.data()),
       msg.size(), out.data(), &n);
  return out;
}

std::string_view View(const Nonce& n) {
  return {reinterpret_cast<const char*>(n.data()), n.size()};
}

std::string U32Bytes(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

}  // namespace

Result<Key> LoadKey(const std::string& path) {
  auto bad = [&](const std::string& why) {
    return Status(GISMO_ERR_INVALID_ARGUMENT, "key file '" + path + "': " + why);
  };
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return bad(std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    close(fd);
    return bad(std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return bad("not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    return bad("group or others may access it (chmod 600)");
  }
  if (st.st_size < static_cast<off_t>(kMinKeySize) ||
      st.st_size > static_cast<off_t>(kMaxKeySize)) {
    close(fd);
    return bad("must hold " + std::to_string(kMinKeySize) + " to " + std::to_string(kMaxKeySize) +
               " bytes (e.g. head -c 32 /dev/urandom > FILE)");
  }
  Key key;
  key.bytes.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < key.bytes.size()) {
    const ssize_t n = read(fd, key.bytes.data() + got, key.bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return bad(n < 0 ? std::strerror(errno) : "shorter than its size");
    }
    got += static_cast<size_t>(n);
  }
  close(fd);
  return key;
}

Nonce RandomNonce() {
  Nonce n{};
  size_t got = 0;
  while (got < n.size()) {
    const ssize_t r = getrandom(n.data() + got, n.size() - got, 0);
    if (r < 0 && errno == EINTR) continue;
    // getrandom fails only on kernels older than 3.17 (or under seccomp):
    // OpenSSL's generator then.
    if (r <= 0) {
      RAND_bytes(n.data(), static_cast<int>(n.size()));
      break;
    }
    got += static_cast<size_t>(r);
  }
  return n;
}

Mac HelloMac(const Key& key, const Nonce& server, const Nonce& client, uint32_t role,
             uint32_t node) {
  return Hmac(key.bytes.data(), key.bytes.size(),
              {"gismo-hello", View(server), View(client), U32Bytes(role), U32Bytes(node)});
}

Mac AccessMac(const Key& key, const Nonce& server, const Nonce& client) {
  return Hmac(key.bytes.data(), key.bytes.size(), {"gismo-access", View(server), View(client)});
}

Mac RegionProof(const uint64_t secret[2], const Nonce& server, const Nonce& client) {
  return Hmac(secret, 2 * sizeof(uint64_t), {"gismo-region", View(server), View(client)});
}

bool MacEqual(const Mac& a, const Mac& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string SanitizeForLog(const std::string& text) {
  constexpr size_t kMax = 64;
  std::string out;
  for (char c : text) {
    if (out.size() == kMax) {
      out += "...";
      break;
    }
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  return out.empty() ? "?" : out;
}

}  // namespace gismo::protocol
