// Built against an installed gismo: puts and gets one object.
#include <cstdio>
#include <cstring>
#include <gismo/gismo.hpp>

int main() {
  auto c = gismo::Client::Connect();
  if (!c.ok()) {
    std::fprintf(stderr, "connect: %s\n", c.status().ToString().c_str());
    return 1;
  }
  auto id = gismo::ObjectId::FromName("installed");
  if (!c->Put(id, "from an installed gismo").ok()) return 2;
  auto b = c->Get(id, 1000);
  if (!b.ok() || std::memcmp(b->data(), "from an installed gismo", b->size()) != 0) return 3;
  std::printf("consumer_cxx: ok (%zu bytes, gismo %s)\n", b->size(), gismo_version());
  return 0;
}
