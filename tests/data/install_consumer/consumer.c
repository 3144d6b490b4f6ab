/* Built against an installed gismo with plain C. */
#include <gismo/gismo.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  gismo_client_t *c = NULL;
  gismo_id_t id;
  bool has = false;
  memset(&id, 7, sizeof id);
  if (gismo_connect(NULL, &c) != GISMO_OK) {
    fprintf(stderr, "connect: %s\n", gismo_last_error());
    return 1;
  }
  if (gismo_put(c, &id, "c", 1, NULL, 0) != GISMO_OK) return 2;
  if (gismo_contains(c, &id, &has) != GISMO_OK || !has) return 3;
  gismo_disconnect(c);
  printf("consumer_c: ok\n");
  return 0;
}
