#include "protocol/auth.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>

namespace gismo::protocol {

namespace {

std::string_view View(const Nonce& n) {
  return {reinterpret_cast<const char*>(n.data()), n.size()};
}

std::string U32Bytes(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

// The first error in this thread's OpenSSL error queue, which is emptied.
std::string TakeOpenSslError() {
  const unsigned long first = ERR_get_error();
  ERR_clear_error();
  if (first == 0) return "OpenSSL gave no reason";
  char text[256];
  ERR_error_string_n(first, text, sizeof text);
  return text;
}

// The HMAC algorithm, fetched once (a thread-safe static), or why it could
// not be (a configuration whose providers have none: OPENSSL_CONF).
struct HmacAlgorithm {
  EVP_MAC* mac;
  std::string error;
};
const HmacAlgorithm& Hmac() {
  static const HmacAlgorithm algorithm = [] {
    ERR_clear_error();
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    return HmacAlgorithm{mac, mac == nullptr ? "no HMAC: " + TakeOpenSslError() : ""};
  }();
  return algorithm;
}

}  // namespace

HmacKey::HmacKey(const void* key, size_t key_size) {
  if (Hmac().mac == nullptr) {
    error_ = Hmac().error;
    return;
  }
  ERR_clear_error();
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(Hmac().mac);
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  if (ctx == nullptr ||
      EVP_MAC_init(ctx, static_cast<const uint8_t*>(key), key_size, params) != 1) {
    error_ = "no HMAC-SHA-256 context: " + TakeOpenSslError();
    EVP_MAC_CTX_free(ctx);
    return;
  }
  keyed_ = std::shared_ptr<EVP_MAC_CTX>(ctx, &EVP_MAC_CTX_free);
}

Mac HmacKey::Compute(std::initializer_list<std::string_view> parts) const {
  // A copy of the keyed context per MAC: the key's set-up (the digest
  // fetched, the padded key hashed) is done once.
  std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)> ctx(
      keyed_ == nullptr ? nullptr : EVP_MAC_CTX_dup(keyed_.get()), &EVP_MAC_CTX_free);
  Mac out{};
  size_t n = 0;
  bool ok = ctx != nullptr;
  for (std::string_view p : parts) {
    ok = ok && (p.empty() || EVP_MAC_update(ctx.get(), reinterpret_cast<const uint8_t*>(p.data()),
                                            p.size()) == 1);
  }
  ok = ok && EVP_MAC_final(ctx.get(), out.data(), &n, out.size()) == 1 && n == out.size();
  if (!ok) {
    // Not computed (no memory): random bytes, which match no peer's MAC.
    static_assert(kMacSize == 2 * kNonceSize);
    const Nonce a = RandomNonce(), b = RandomNonce();
    std::memcpy(out.data(), a.data(), a.size());
    std::memcpy(out.data() + a.size(), b.data(), b.size());
  }
  return out;
}

Mac HmacSha256(const void* key, size_t key_size, std::initializer_list<std::string_view> parts) {
  return HmacKey(key, key_size).Compute(parts);
}

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
  // Every keyed connection MACs with it: a process whose OpenSSL cannot
  // (its configuration loads no provider with HMAC or SHA-256) is told so
  // here, not by handshakes that fail as if the keys differed.
  if (HmacKey check(key.bytes.data(), key.bytes.size()); !check.ok()) {
    return Status(GISMO_ERR_UNSUPPORTED,
                  "key file '" + path + "': this process's OpenSSL cannot compute HMAC-SHA-256 (" +
                      check.error() + "); look at OPENSSL_CONF and the providers it activates");
  }
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

Mac HelloMac(const Key& key, const Nonce& server, std::string_view hello) {
  return HmacSha256(key.bytes.data(), key.bytes.size(), {"gismo-hello", View(server), hello});
}

Mac AccessMac(const Key& key, const Nonce& server, const Nonce& client, std::string_view access) {
  return HmacSha256(key.bytes.data(), key.bytes.size(),
                    {"gismo-access", View(server), View(client), access});
}

Mac RegionProof(const uint64_t secret[2], const Nonce& server, const Nonce& client) {
  return HmacSha256(secret, 2 * sizeof(uint64_t), {"gismo-region", View(server), View(client)});
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
