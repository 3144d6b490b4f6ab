/* The C API used from C99: every call of the life cycle and its errors.
 * Run by run_with_manager.sh with GISMO_ADDRESS set. */
#include <gismo/gismo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define EXPECT(cond)                                                                      \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "%s:%d: expected %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              gismo_last_error());                                                        \
      ++failures;                                                                         \
    }                                                                                     \
  } while (0)

static gismo_id_t make_id(const char *name) {
  gismo_id_t id;
  memset(&id, 0, sizeof id);
  memcpy(id.bytes, name, strlen(name) < GISMO_ID_SIZE ? strlen(name) : GISMO_ID_SIZE);
  return id;
}

int main(void) {
  gismo_client_t *c = NULL, *d = NULL;
  gismo_status_t s = gismo_connect(NULL, &c); /* $GISMO_ADDRESS */
  if (s != GISMO_OK) {
    fprintf(stderr, "connect: %s: %s\n", gismo_status_message(s), gismo_last_error());
    return 1;
  }
  EXPECT(gismo_connect(NULL, &d) == GISMO_OK);

  gismo_id_t id = make_id("c-object");
  void *data = NULL;
  EXPECT(gismo_create(c, &id, 11, "md", 2, &data) == GISMO_OK);
  EXPECT(data != NULL);
  memcpy(data, "hello world", 11);
  EXPECT(gismo_create(c, &id, 11, NULL, 0, &data) == GISMO_ERR_OBJECT_EXISTS);
  bool has = true;
  EXPECT(gismo_contains(d, &id, &has) == GISMO_OK && !has);
  EXPECT(gismo_seal(d, &id) == GISMO_ERR_NOT_CREATOR);
  EXPECT(gismo_seal(c, &id) == GISMO_OK);
  EXPECT(gismo_seal(c, &id) == GISMO_ERR_OBJECT_ALREADY_SEALED);
  EXPECT(gismo_contains(d, &id, &has) == GISMO_OK && has);

  gismo_id_t ids[2] = {id, make_id("missing")};
  gismo_buffer_t bufs[2];
  EXPECT(gismo_get(d, ids, 2, 10, bufs) == GISMO_OK);
  EXPECT(bufs[0].data != NULL && bufs[0].data_size == 11 &&
         memcmp(bufs[0].data, "hello world", 11) == 0);
  EXPECT(bufs[0].metadata_size == 2 && memcmp(bufs[0].metadata, "md", 2) == 0);
  EXPECT(bufs[1].data == NULL);
  const void *base = NULL;
  size_t size = 0;
  EXPECT(gismo_region_read_view(d, &base, &size) == GISMO_OK);
  EXPECT((const char *)bufs[0].data >= (const char *)base &&
         (const char *)bufs[0].data + 11 <= (const char *)base + size);
  const void *writable = NULL;
  size_t writable_size = 0;
  EXPECT(gismo_region_mapping(d, &writable, &writable_size) == GISMO_OK);
  EXPECT(writable != base && writable_size == size);
  /* The same bytes at the same offset in both. */
  EXPECT(memcmp((const char *)writable + ((const char *)bufs[0].data - (const char *)base),
                "hello world", 11) == 0);

  gismo_object_info_t info;
  EXPECT(gismo_stat(c, &id, &info) == GISMO_OK && info.ref_count == 2 &&
         info.state == GISMO_STATE_SEALED);
  EXPECT(gismo_delete(c, &id) == GISMO_OK); /* deferred: both hold it */
  EXPECT(gismo_contains(c, &id, &has) == GISMO_OK && !has);
  EXPECT(gismo_release(d, &id) == GISMO_OK);
  EXPECT(gismo_release(d, &id) == GISMO_ERR_NOT_HELD);
  EXPECT(gismo_release(c, &id) == GISMO_OK); /* last: freed now */
  EXPECT(gismo_stat(c, &id, &info) == GISMO_ERR_OBJECT_NOT_FOUND);

  gismo_id_t p = make_id("put");
  EXPECT(gismo_put(c, &p, "xyz", 3, NULL, 0) == GISMO_OK);
  size_t count = 0;
  EXPECT(gismo_list(c, NULL, 0, &count) == GISMO_OK && count == 1);
  gismo_usage_t u;
  EXPECT(gismo_usage(c, &u) == GISMO_OK && u.object_count == 1 && u.client_count == 2);
  EXPECT(u.capacity_bytes > 0 && u.used_bytes + u.free_bytes == u.capacity_bytes);

  gismo_id_t a = make_id("aborted");
  EXPECT(gismo_create(c, &a, 5, NULL, 0, &data) == GISMO_OK);
  EXPECT(gismo_abort(d, &a) == GISMO_ERR_NOT_CREATOR);
  EXPECT(gismo_abort(c, &a) == GISMO_OK);
  EXPECT(gismo_abort(c, &a) == GISMO_ERR_OBJECT_NOT_FOUND);

  EXPECT(gismo_create(c, NULL, 1, NULL, 0, &data) == GISMO_ERR_INVALID_ARGUMENT);
  EXPECT(strlen(gismo_last_error()) > 0);
  EXPECT(strcmp(gismo_status_message(GISMO_ERR_OUT_OF_MEMORY), "store is full") == 0);
  uint32_t node = 99, slot = 0;
  EXPECT(gismo_client_identity(c, &node, &slot) == GISMO_OK && slot > 0);

  /* The list of status codes is usable from C, and agrees with the C API. */
#define EXPECT_LISTED_CODE(name, short_name, value, message, py_class, py_base) \
  EXPECT((int)name == value && strcmp(gismo_status_message(name), message) == 0);
  GISMO_STATUS_CODES(EXPECT_LISTED_CODE)
#undef EXPECT_LISTED_CODE
  EXPECT(GISMO_ERR_BUSY == 18);
  EXPECT(strcmp(gismo_state_name(GISMO_STATE_UNSEALED), "unsealed") == 0);
  EXPECT(strcmp(gismo_state_name(GISMO_STATE_SEALED), "sealed") == 0);
  EXPECT(strcmp(gismo_state_name(GISMO_STATE_DELETING), "deleting") == 0);
  EXPECT(strcmp(gismo_state_name((gismo_object_state_t)0), "unknown") == 0);
  EXPECT(gismo_create(c, &a, 5, NULL, 0, &data) == GISMO_OK);
  EXPECT(gismo_stat(c, &a, &info) == GISMO_OK && info.state == GISMO_STATE_UNSEALED &&
         info.creator_client == slot);
  EXPECT(gismo_abort(c, &a) == GISMO_OK);

  /* Names: bind, compare-and-swap, lookup, list, unbind, from C. */
  gismo_name_info_t ni;
  EXPECT(gismo_bind_name(c, "c/ckpt", &p) == GISMO_OK);
  EXPECT(gismo_lookup_name(d, "c/ckpt", &ni) == GISMO_OK && strcmp(ni.name, "c/ckpt") == 0 &&
         ni.name_size == 6 && memcmp(ni.id.bytes, p.bytes, GISMO_ID_SIZE) == 0 && ni.version == 1);
  EXPECT(gismo_swap_name(d, "c/ckpt", NULL, &p) == GISMO_ERR_CONFLICT);
  EXPECT(gismo_swap_name(d, "c/ckpt", &a, &p) == GISMO_ERR_CONFLICT);
  EXPECT(gismo_swap_name(d, "c/ckpt", &p, &p) == GISMO_OK);
  EXPECT(gismo_list_names(c, "c/", NULL, 0, &count) == GISMO_OK && count == 1);
  EXPECT(gismo_list_names(c, "c/", &ni, 1, &count) == GISMO_OK && ni.version == 2);
  EXPECT(gismo_bind_name(c, "", &p) == GISMO_ERR_INVALID_ARGUMENT);
  EXPECT(gismo_bind_name(c, "x", &a) == GISMO_ERR_OBJECT_NOT_FOUND);
  /* Waiting for a change: bound to p, so known NULL returns at once, known p
   * times out. */
  EXPECT(gismo_wait_name(d, "c/ckpt", NULL, 0, &ni) == GISMO_OK && ni.version == 2);
  EXPECT(gismo_wait_name(d, "c/ckpt", &p, 10, &ni) == GISMO_ERR_TIMEOUT);
  EXPECT(gismo_wait_name(d, "c/ckpt", &p, -2, &ni) == GISMO_ERR_INVALID_ARGUMENT);
  EXPECT(gismo_unbind_name(c, "c/ckpt", NULL) == GISMO_OK);
  EXPECT(gismo_wait_name(d, "c/ckpt", &p, -1, &ni) == GISMO_ERR_OBJECT_NOT_FOUND);
  EXPECT(gismo_lookup_name(c, "c/ckpt", &ni) == GISMO_ERR_OBJECT_NOT_FOUND);

  EXPECT(gismo_disconnect(d) == GISMO_OK);
  EXPECT(gismo_contains(d, &id, &has) == GISMO_ERR_INVALID_ARGUMENT);
  EXPECT(gismo_delete(c, &p) == GISMO_OK);
  EXPECT(gismo_disconnect(c) == GISMO_OK);
  printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
  return failures ? 1 : 0;
}
