/*
 * gismo: a global, IO-free shared-memory object store.
 *
 * The C API. Compiles as C99 and C++. Every function returns a gismo_status_t
 * and never aborts the process; a failed call leaves a human-readable detail
 * in gismo_last_error() (per thread).
 *
 * Object life cycle: create -> (write) -> seal -> get/release by anyone ->
 * delete. Objects are immutable once sealed. A get returns a pointer into the
 * shared region: no copy, no serialization, no network on the data path.
 *
 * Thread safety: a gismo_client_t may be used from several threads; calls on
 * one client are serialized internally. For parallelism open one client per
 * thread.
 *
 * Signals: each connected client has one thread of the library's own (it
 * reads the manager's connection). That thread blocks every asynchronous
 * signal, so a signal sent to the process (SIGINT, SIGTERM, SIGUSR1...) is
 * handled on one of the application's threads, and blocking it there (around
 * a step a handler must not interrupt) keeps it pending until unblocked.
 * Signals a fault raises (SIGSEGV, SIGBUS...) are not blocked.
 *
 * fork(): a client belongs to the process that connected it. In a child of
 * fork(), every call on a handle the parent connected (gismo_disconnect
 * included) fails with GISMO_ERR_INVALID_ARGUMENT and touches nothing: the
 * child shares the parent's connection and slot but none of its threads,
 * and using them would corrupt the parent's session. The child connects a
 * client of its own; the parent's keeps working. (Detected by a
 * pthread_atfork handler: a child made by a raw clone() is not detected.)
 * The child also inherits the parent's mappings of the region, and with them
 * the buffers the parent got or created: they stay valid only while the
 * parent holds them. Once the parent releases them, or dies (its references
 * and unsealed objects go with it), their memory may be reused by other
 * objects. A child that keeps using an object gets it with its own client.
 *
 * Timeouts: timeout_ms is -1 (forever), 0 (no wait) or a number of
 * milliseconds; any value too large to reach (INT64_MAX, 10^13) waits as
 * long as -1.
 */
#ifndef GISMO_GISMO_H_
#define GISMO_GISMO_H_

#include <gismo/status_codes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define GISMO_EXPORT __attribute__((visibility("default")))
#else
#define GISMO_EXPORT
#endif

#define GISMO_VERSION_MAJOR 0
#define GISMO_VERSION_MINOR 1
#define GISMO_VERSION_PATCH 0

/* Object ids are chosen by the application: 20 opaque bytes, unique in the
 * cluster. */
#define GISMO_ID_SIZE 20
typedef struct gismo_id {
  uint8_t bytes[GISMO_ID_SIZE];
} gismo_id_t;

typedef struct gismo_client gismo_client_t;

/* The outcome of a call. The codes, their values and their messages are listed
 * in gismo/status_codes.h. Values are never changed or reused; new codes are
 * appended. */
typedef enum gismo_status {
#define GISMO_STATUS_ENUMERATOR_(name, short_name, value, message, py_class, py_base) name = value,
  GISMO_STATUS_CODES(GISMO_STATUS_ENUMERATOR_)
#undef GISMO_STATUS_ENUMERATOR_
} gismo_status_t;

/* A static, human-readable description of a status code. Never NULL. */
GISMO_EXPORT const char *gismo_status_message(gismo_status_t status);

/* The detail of the last failed call on this thread ("" if none has failed).
 * Like errno, it is set by every call that fails and left as it was by every
 * call that succeeds: read it right after a call returned an error. The
 * string stays valid until the next gismo call on the same thread. */
GISMO_EXPORT const char *gismo_last_error(void);

/* Library version string, e.g. "0.1.0". */
GISMO_EXPORT const char *gismo_version(void);

/* ----- connection ------------------------------------------------------- */

/* address: "unix:/path" or "tcp:host:port". NULL or "" means $GISMO_ADDRESS,
 * else the default: "unix:/run/gismo/gismo.sock" for root or if that socket
 * exists, else "unix:$XDG_RUNTIME_DIR/gismo.sock", else
 * "unix:/tmp/gismo-UID/gismo.sock" (a directory that is not the caller's or
 * root's is refused).
 * $GISMO_KEY_FILE names the cluster key file, which a manager with
 * --key-file requires of TCP clients (doc/security.md); a client with a key
 * requires the manager to prove it holds the same. A refused client gets
 * GISMO_ERR_PERMISSION. $GISMO_REGION is where this host sees the region
 * (needed over TCP without a key: the manager does not say). */
GISMO_EXPORT gismo_status_t gismo_connect(const char *address, gismo_client_t **client);

/* The address gismo_connect(NULL) would connect to now ($GISMO_ADDRESS, else
 * the default above), for messages; "" if the default is refused
 * (gismo_last_error() says why). Valid until the next call of it on this
 * thread. */
GISMO_EXPORT const char *gismo_default_address(void);

/* gismo_connect with everything the environment would give spelled out.
 * A NULL or "" field means its environment variable, then the default. */
typedef struct gismo_connect_options {
  const char *address;     /* as gismo_connect's; else $GISMO_ADDRESS */
  const char *key_file;    /* the cluster key file; else $GISMO_KEY_FILE */
  const char *region_path; /* where this host sees the region; else $GISMO_REGION */
} gismo_connect_options_t;
GISMO_EXPORT gismo_status_t gismo_connect_with_options(const gismo_connect_options_t *options,
                                                       gismo_client_t **client);

/* Aborts the client's unsealed objects, drops its references and closes the
 * client, even if an error is returned. It works while the manager is away
 * (a restart, a lost connection): the goodbye is then left in the region and
 * the next manager recovers the client as a departure, never as a suspect.
 * Every later call on the handle fails with GISMO_ERR_INVALID_ARGUMENT
 * ("client is disconnected"); the few bytes of the handle itself are kept for
 * that (for the 4096 most recently closed handles). Do not disconnect while
 * another thread is inside a call on the same client. */
GISMO_EXPORT gismo_status_t gismo_disconnect(gismo_client_t *client);

/* ----- object life cycle ------------------------------------------------ */

/* Creates an unsealed object of data_size bytes with a copy of the given
 * metadata, and returns a writable pointer to its data (64-byte aligned).
 * The creator holds one reference until it releases the object. */
GISMO_EXPORT gismo_status_t gismo_create(gismo_client_t *client, const gismo_id_t *id,
                                         size_t data_size, const void *metadata,
                                         size_t metadata_size, void **data);

/* Flags for gismo_create_with_flags and gismo_put_with_flags (bitwise or). */
typedef enum gismo_create_flag {
  /* The object belongs to the client that creates it: it is deleted when
   * that client disconnects, or when it is recovered after its death (once it
   * is fenced). Readers that hold it keep its bytes until they release, as
   * with any delete. For results whose producer owns their life (Ray's
   * ownership); not for data that must outlive its writer. Until it is
   * deleted, an owned object counts against the objects its owner may hold
   * (gismo-manager --max-refs-per-client), held or not. A client that
   * re-attaches to a restarted manager keeps its owned objects. */
  GISMO_CREATE_OWNED = 1u << 0,
  /* The store may delete the object, once sealed and held by nobody, to make
   * room for a create that does not fit (with a "deleted" notification whose
   * reason is eviction). For caches: whoever misses it loads it again. */
  GISMO_CREATE_EVICTABLE = 1u << 1,
} gismo_create_flag_t;

/* gismo_create with flags (gismo_create_flag_t bits; unknown bits give
 * GISMO_ERR_INVALID_ARGUMENT). gismo_create is this with flags 0. */
GISMO_EXPORT gismo_status_t gismo_create_with_flags(gismo_client_t *client, const gismo_id_t *id,
                                                    size_t data_size, const void *metadata,
                                                    size_t metadata_size, uint32_t flags,
                                                    void **data);

/* Makes the object immutable and visible to every client on every node. */
GISMO_EXPORT gismo_status_t gismo_seal(gismo_client_t *client, const gismo_id_t *id);

/* Create, copy data in, seal and release in one call. */
GISMO_EXPORT gismo_status_t gismo_put(gismo_client_t *client, const gismo_id_t *id,
                                      const void *data, size_t data_size, const void *metadata,
                                      size_t metadata_size);

/* gismo_put with flags, as gismo_create_with_flags. */
GISMO_EXPORT gismo_status_t gismo_put_with_flags(gismo_client_t *client, const gismo_id_t *id,
                                                 const void *data, size_t data_size,
                                                 const void *metadata, size_t metadata_size,
                                                 uint32_t flags);

/* Discards an unsealed object; only its creator may. The id is free again. */
GISMO_EXPORT gismo_status_t gismo_abort(gismo_client_t *client, const gismo_id_t *id);

typedef struct gismo_buffer {
  const void *data; /* NULL if the object was not available in time */
  size_t data_size;
  const void *metadata;
  size_t metadata_size;
} gismo_buffer_t;

/* Waits up to timeout_ms (0: no wait, -1: forever) for each object to be
 * sealed. Every buffer with data != NULL holds a reference that
 * gismo_release gives back; missing objects come back with data == NULL and
 * the call still returns GISMO_OK. A get that would wait (timeout_ms != 0)
 * for more than 65536 objects not sealed yet fails with GISMO_ERR_LIMIT and
 * takes nothing (the client stays connected): ask in smaller groups. One
 * call for many ids costs less per object than a call each: it overlaps the
 * index's cache misses (doc/benchmarks.md, "Index scale"). */
GISMO_EXPORT gismo_status_t gismo_get(gismo_client_t *client, const gismo_id_t *ids, size_t count,
                                      int64_t timeout_ms, gismo_buffer_t *buffers);

/* Gets a sealed object, or, if it does not exist, creates it for the caller
 * to load: the one call a cache needs so that many clients missing the same
 * object at once produce exactly one loader. Create is the arbiter: the
 * client whose create succeeds gets *data (writable, as gismo_create; it
 * must write, seal and release it, or abort it) and buffer->data == NULL;
 * every other caller waits, up to timeout_ms, for the seal and gets
 * *data == NULL and a buffer holding a reference (as gismo_get). If the
 * loader aborts, or dies and is recovered, or the object is evicted or
 * deleted before a waiter gets it, the waiters try again and one of them
 * becomes the loader. GISMO_ERR_TIMEOUT if nothing came in time (timeout
 * 0: one attempt). flags as gismo_create_with_flags. */
GISMO_EXPORT gismo_status_t gismo_get_or_create(gismo_client_t *client, const gismo_id_t *id,
                                                size_t data_size, const void *metadata,
                                                size_t metadata_size, uint32_t flags,
                                                int64_t timeout_ms, gismo_buffer_t *buffer,
                                                void **data);
/* Evicts sealed, evictable objects that nobody holds (the store's CLOCK
 * order: least recently used first, approximately) until at least `bytes`
 * of objects' blocks are evicted or nothing more is evictable, whatever is
 * free already (so: room for `bytes` more); *evicted (may be NULL)
 * receives the bytes evicted. Each eviction is a delete, notified with
 * reason GISMO_REASON_EVICTED. A create that does not fit does this by
 * itself (at least the larger of its size and the store's evict share). */
GISMO_EXPORT gismo_status_t gismo_evict(gismo_client_t *client, uint64_t bytes, uint64_t *evicted);
/* Marks an evictable object as recently used, as a get does (no reference
 * is taken). GISMO_ERR_OBJECT_NOT_FOUND if it does not exist. */
GISMO_EXPORT gismo_status_t gismo_touch(gismo_client_t *client, const gismo_id_t *id);
/* Gives back one reference taken by create or get. */
GISMO_EXPORT gismo_status_t gismo_release(gismo_client_t *client, const gismo_id_t *id);

/* Deletes a sealed object. If anyone holds it the memory is freed at the last
 * release; from this call on, contains is false and get does not see it. */
GISMO_EXPORT gismo_status_t gismo_delete(gismo_client_t *client, const gismo_id_t *id);

/* *contains is true iff the object exists and is sealed (and not deleted). */
GISMO_EXPORT gismo_status_t gismo_contains(gismo_client_t *client, const gismo_id_t *id,
                                           bool *contains);

/* ----- inspection -------------------------------------------------------- */

typedef enum gismo_object_state {
  GISMO_STATE_UNSEALED = 1, /* created, being written by its creator */
  GISMO_STATE_SEALED = 2,
  GISMO_STATE_DELETING = 3, /* deleted, freed at the last release */
  /* Deprecated: the former name of GISMO_STATE_UNSEALED. */
  GISMO_STATE_CREATED = GISMO_STATE_UNSEALED
} gismo_object_state_t;

/* The state's name as every gismo tool prints it: "unsealed", "sealed" or
 * "deleting"; "unknown" for any other value. Static, never NULL. */
GISMO_EXPORT const char *gismo_state_name(gismo_object_state_t state);

typedef struct gismo_object_info {
  gismo_id_t id;
  gismo_object_state_t state;
  uint64_t data_size;
  uint64_t metadata_size;
  uint64_t ref_count;      /* references held by all clients */
  uint32_t creator_node;   /* node id of the creating client */
  uint32_t creator_client; /* its client slot on that node */
  uint64_t create_time_ns; /* CLOCK_REALTIME at create */
  uint32_t flags;          /* gismo_create_flag_t bits it was created with */
} gismo_object_info_t;

/* Information about one object, whatever its state. */
GISMO_EXPORT gismo_status_t gismo_stat(gismo_client_t *client, const gismo_id_t *id,
                                       gismo_object_info_t *info);

/* Lists objects. Writes at most `capacity` entries into `infos` and the
 * number of objects in the store (which may be larger) into *count. Call with
 * capacity 0 to size the array. The listing is a consistent snapshot of each
 * object, not of the whole store. On failure *count is 0 (as for every
 * listing: gismo_list_clients, gismo_list_names). */
GISMO_EXPORT gismo_status_t gismo_list(gismo_client_t *client, gismo_object_info_t *infos,
                                       size_t capacity, size_t *count);

typedef struct gismo_usage {
  uint64_t capacity_bytes; /* heap bytes objects can use */
  uint64_t used_bytes;     /* bytes allocated to objects (rounded) */
  uint64_t free_bytes;
  uint64_t largest_free_bytes; /* largest object size that fits now */
  uint64_t object_count;       /* sealed + unsealed + deleting */
  uint64_t sealed_count;
  uint64_t unsealed_count;
  uint64_t deleting_count;
  uint64_t max_objects;
  uint32_t client_count;
  uint32_t max_clients;
  uint64_t region_size;
  uint64_t manager_start_time_ns; /* CLOCK_REALTIME when the manager started */
  uint64_t manager_heartbeat_ns;  /* refreshed every few ms while it runs */
  uint64_t manager_epoch;         /* manager starts on this region so far */
  uint64_t format_time_ns;        /* when the region was formatted */
  uint32_t format_version;
  uint32_t coherence_mode; /* 1 coherent, 2 non-coherent */
  uint64_t evictions;      /* evictable objects evicted so far (region's life) */
  uint64_t evicted_bytes;  /* their bytes (as allocated) */
  /* Random at format: names this formatting of the region. Two processes see
   * the same pool exactly when they see the same uuid (a reference taken in
   * one pool is meaningless in another). */
  uint64_t region_uuid[2];
  uint64_t region_features; /* GISMO_FEATURE_* bits the region was formatted with */
} gismo_usage_t;

/* gismo_usage_t.region_features: the region is durable (gismo-manager
 * --durable): committed metadata and sealed objects survive a power loss. */
#define GISMO_FEATURE_DURABLE 1u

/* Capacity and usage of the store. */
GISMO_EXPORT gismo_status_t gismo_usage(gismo_client_t *client, gismo_usage_t *usage);

typedef struct gismo_client_info {
  uint32_t client; /* client slot, as in gismo_object_info_t */
  uint32_t node;
  uint64_t client_id;       /* unique over the region's life */
  uint64_t pid;             /* on its own node; informational */
  uint64_t connect_time_ns; /* CLOCK_REALTIME */
  uint64_t held_objects;    /* distinct objects it holds references to */
} gismo_client_info_t;

/* Lists the connected clients, like gismo_list. */
GISMO_EXPORT gismo_status_t gismo_list_clients(gismo_client_t *client, gismo_client_info_t *infos,
                                               size_t capacity, size_t *count);

/* ----- names ------------------------------------------------------------ */

/* A flat namespace of names bound to object ids, kept in the shared region:
 * bindings survive the death of the client that made them and restarts of
 * the manager, and every change is atomic (a client that dies mid-change is
 * rolled back). A name is 1 to GISMO_NAME_MAX bytes without a NUL byte (any
 * other bytes; UTF-8 is what the tools print); longer, empty or NULL names
 * fail with GISMO_ERR_INVALID_ARGUMENT. The table holds a fixed number of
 * names (gismo-manager --max-names at format; GISMO_ERR_LIMIT when full).
 *
 * A name is bound only to a sealed object (GISMO_ERR_OBJECT_NOT_FOUND or
 * GISMO_ERR_OBJECT_NOT_SEALED otherwise). It is not a reference: deleting
 * the object leaves the name bound, and a lookup still returns the old id
 * (whose get then finds nothing). */
#define GISMO_NAME_MAX 192

typedef struct gismo_name_info {
  char name[GISMO_NAME_MAX + 1]; /* NUL-terminated */
  size_t name_size;              /* bytes before the NUL */
  gismo_id_t id;                 /* the object it is bound to */
  uint64_t version;              /* binds of this name since it was last unbound (1: first) */
  uint64_t bind_time_ns;         /* CLOCK_REALTIME of the last bind */
} gismo_name_info_t;

/* Binds `name` to `id`, whatever it was bound to before. */
GISMO_EXPORT gismo_status_t gismo_bind_name(gismo_client_t *client, const char *name,
                                            const gismo_id_t *id);

/* Compare-and-swap of a name: binds `name` to `desired` only if it is bound to
 * `*expected` now, or, with expected == NULL, only if it is not bound at all;
 * otherwise GISMO_ERR_CONFLICT and nothing changes. Readers see the old
 * binding or the new one, never neither. */
GISMO_EXPORT gismo_status_t gismo_swap_name(gismo_client_t *client, const char *name,
                                            const gismo_id_t *expected, const gismo_id_t *desired);

/* Unbinds `name` (the object is untouched); with expected != NULL only if it
 * is bound to *expected (else GISMO_ERR_CONFLICT). GISMO_ERR_OBJECT_NOT_FOUND
 * if it is not bound. */
GISMO_EXPORT gismo_status_t gismo_unbind_name(gismo_client_t *client, const char *name,
                                              const gismo_id_t *expected);

/* What `name` is bound to; GISMO_ERR_OBJECT_NOT_FOUND if it is not bound. */
GISMO_EXPORT gismo_status_t gismo_lookup_name(gismo_client_t *client, const char *name,
                                              gismo_name_info_t *info);

/* Waits up to timeout_ms (0: no wait, -1: forever) for `name` to be bound to
 * another id than `*known` (known == NULL: to be bound at all) and puts that
 * binding in *info. Returns at once if it already is, whenever the change
 * happened. GISMO_ERR_OBJECT_NOT_FOUND if `known` is given and the name is
 * (or becomes) unbound; GISMO_ERR_TIMEOUT if nothing changed in time. Works
 * across nodes: every bind, swap and unbind tells the manager (only when
 * someone waits), which wakes the waiters; nothing polls. A name bound away
 * and back to `*known` between two looks is not seen (checkpoints publish a
 * new id each time, so this does not arise for them). */
GISMO_EXPORT gismo_status_t gismo_wait_name(gismo_client_t *client, const char *name,
                                            const gismo_id_t *known, int64_t timeout_ms,
                                            gismo_name_info_t *info);

/* Lists the bindings whose name starts with `prefix` (NULL or "": all), like
 * gismo_list: at most `capacity` entries into `infos`, the number that match
 * into *count. One consistent snapshot of the table, in no particular
 * order. */
GISMO_EXPORT gismo_status_t gismo_list_names(gismo_client_t *client, const char *prefix,
                                             gismo_name_info_t *infos, size_t capacity,
                                             size_t *count);

/* ----- fencing (operators) ----------------------------------------------- */

typedef enum {
  GISMO_FENCE_CLIENT = 1, /* value: a client id (gismo_client_info_t.client_id) */
  GISMO_FENCE_SLOT = 2,   /* value: a client slot */
  GISMO_FENCE_NODE = 3    /* value: a node id: every client of that node */
} gismo_fence_target_t;

/* An operator's word that a client, or every client of a node, can never run
 * again (its host is powered off, unplugged from the pool, its process is
 * certainly gone). The manager then recovers it at once: undoes its
 * interrupted operation, aborts its unsealed objects, drops its references.
 * A suspected client is otherwise left untouched until the manager can prove
 * it gone itself (see doc/failure.md); declaring a live client fenced lets
 * others reuse what it may still write, so use it only when that is certain.
 * `report` (may be NULL) receives the manager's account, NUL-terminated.
 * GISMO_ERR_OBJECT_NOT_FOUND: no such client. */
GISMO_EXPORT gismo_status_t gismo_fence(gismo_client_t *client, gismo_fence_target_t target,
                                        uint64_t value, char *report, size_t report_size);

/* ----- notifications ----------------------------------------------------- */

typedef enum gismo_event {
  GISMO_EVENT_SEALED = 1,
  GISMO_EVENT_DELETED = 2, /* deleted (or evicted) */
  /* The subscriber fell so far behind that events were lost (the store never
   * waits for a slow subscriber). Resynchronize with gismo_list. */
  GISMO_EVENT_OVERFLOW = 3
} gismo_event_t;

/* Why an object was deleted (gismo_notification_t.reason). */
typedef enum gismo_event_reason {
  GISMO_REASON_NONE = 0,    /* a seal, or a delete by a client */
  GISMO_REASON_EVICTED = 1, /* evicted by the store to make room */
} gismo_event_reason_t;
typedef struct gismo_notification {
  gismo_event_t event;
  gismo_id_t id; /* zero for GISMO_EVENT_OVERFLOW */
  size_t data_size;
  size_t metadata_size;
  uint32_t node;   /* node that sealed or deleted it */
  uint32_t reason; /* gismo_event_reason_t (in what was padding: same size) */
  uint64_t seq;    /* position in the store's event order; 0 for the
                      initial listing of already sealed objects */
} gismo_notification_t;

/* Subscribes this client to notifications. The subscriber first learns of
 * every object already sealed, then of each seal and delete anywhere in the
 * cluster as it happens; the events of one object arrive in the order they
 * happened. *fd (owned by the library, closed at disconnect) becomes readable
 * when notifications are waiting: use it with poll/epoll/asio, then call
 * gismo_next_notification with timeout 0 until it returns GISMO_ERR_TIMEOUT.
 * Subscribing again returns the same fd. */
GISMO_EXPORT gismo_status_t gismo_subscribe(gismo_client_t *client, int *fd);

/* The next notification, waiting up to timeout_ms (0: no wait, -1: forever).
 * GISMO_ERR_TIMEOUT if none came; GISMO_ERR_INVALID_ARGUMENT if the client
 * has not subscribed. */
GISMO_EXPORT gismo_status_t gismo_next_notification(gismo_client_t *client,
                                                    gismo_notification_t *out, int64_t timeout_ms);

/* This client's node id and client slot as assigned by the manager. The slot
 * is what gismo_client_info_t.client and gismo_object_info_t.creator_client
 * hold; it is reused once the client is gone (gismo_client_info_t.client_id is
 * the id that is not). Either out-pointer may be NULL. */
GISMO_EXPORT gismo_status_t gismo_client_identity(gismo_client_t *client, uint32_t *node,
                                                  uint32_t *slot);

/* The region mapping of this client: [*base, *base + *size), writable.
 * gismo_create's data pointers lie inside it. */
GISMO_EXPORT gismo_status_t gismo_region_mapping(gismo_client_t *client, const void **base,
                                                 size_t *size);

/* The read view of this client: a second mapping of the same region, read-only
 * (PROT_READ), of the same size. gismo_get's data and metadata pointers lie
 * inside it, so a reader that writes through one by mistake faults instead of
 * changing a sealed object (doc/security.md says what this does not stop).
 * The same bytes are at the same offset in both: base_of_mapping + (p -
 * base_of_read_view) is p's writable alias. If the view could not be mapped
 * (no address space for it), it is the mapping itself. */
GISMO_EXPORT gismo_status_t gismo_region_read_view(gismo_client_t *client, const void **base,
                                                   size_t *size);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GISMO_GISMO_H_ */
