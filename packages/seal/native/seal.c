// AES-256-GCM through the OpenSSL that node itself links (node exports its EVP symbols), enciphering
// into a buffer the caller passes (which may be the input itself) where node:crypto's Cipher.update
// allocates a fresh output and copies on every call. N-API only, so one build loads on node 20, 22, 24.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <node_api.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_BYTES 32
#define NONCE_BYTES 12
#define TAG_BYTES 16

typedef struct {
  EVP_CIPHER_CTX* evp;  // NULL once finished
  bool encrypt;
} gcm_t;

#define CHECK(call)                                                     \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, "ERR_SPLINTER_SEAL_NATIVE", #call " failed"); \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

static napi_value fail(napi_env env, const char* message) {
  ERR_clear_error();
  napi_throw_error(env, "ERR_SPLINTER_SEAL_NATIVE", message);
  return NULL;
}

static bool bytes_of(napi_env env, napi_value value, unsigned char** data, size_t* length) {
  bool is_typedarray = false;
  if (napi_is_typedarray(env, value, &is_typedarray) != napi_ok || !is_typedarray) return false;
  napi_typedarray_type type;
  void* pointer = NULL;
  if (napi_get_typedarray_info(env, value, &type, length, &pointer, NULL, NULL) != napi_ok) return false;
  if (type != napi_uint8_array) return false;
  *data = pointer;
  return true;
}

static void finalize(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  gcm_t* gcm = data;
  EVP_CIPHER_CTX_free(gcm->evp);
  free(gcm);
}

static gcm_t* unwrap(napi_env env, napi_value value) {
  void* data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == NULL) return NULL;
  gcm_t* gcm = data;
  return gcm->evp ? gcm : NULL;
}

// Reads `count` arguments into argv; the first is a live context, returned (else NULL).
static gcm_t* context_call(napi_env env, napi_callback_info info, size_t count, napi_value* argv) {
  size_t argc = count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < count) return NULL;
  return unwrap(env, argv[0]);
}

// Frees the OpenSSL context once its tag is out or checked, and drops what a failure left on OpenSSL's
// error queue, which node's own crypto calls would otherwise find there.
static void finish(gcm_t* gcm) {
  EVP_CIPHER_CTX_free(gcm->evp);
  gcm->evp = NULL;
  ERR_clear_error();
}

// create(key: Uint8Array, nonce: Uint8Array, encrypt: boolean): External
static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  unsigned char *key, *nonce;
  size_t key_length, nonce_length;
  bool encrypt;
  if (argc < 3 || !bytes_of(env, argv[0], &key, &key_length) || key_length != KEY_BYTES ||
      !bytes_of(env, argv[1], &nonce, &nonce_length) || nonce_length != NONCE_BYTES ||
      napi_get_value_bool(env, argv[2], &encrypt) != napi_ok)
    return fail(env, "create(key: 32 bytes, nonce: 12 bytes, encrypt: boolean)");
  gcm_t* gcm = calloc(1, sizeof(gcm_t));
  if (gcm == NULL) return fail(env, "out of memory");
  gcm->encrypt = encrypt;
  gcm->evp = EVP_CIPHER_CTX_new();
  // 12-byte nonces are GCM's default IV length, so no EVP_CTRL_GCM_SET_IVLEN.
  if (gcm->evp == NULL || EVP_CipherInit_ex(gcm->evp, EVP_aes_256_gcm(), NULL, key, nonce, encrypt) != 1) {
    EVP_CIPHER_CTX_free(gcm->evp);
    free(gcm);
    return fail(env, "EVP_CipherInit_ex failed");
  }
  napi_value external;
  if (napi_create_external(env, gcm, finalize, NULL, &external) != napi_ok) {
    finalize(env, gcm, NULL);
    return fail(env, "napi_create_external failed");
  }
  return external;
}

// update(gcm, input: Uint8Array, output: Uint8Array): undefined. output is at least as long as input
// and may be input itself (GCM is a stream cipher; OpenSSL allows exact in-place operation).
static napi_value update(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  gcm_t* gcm = context_call(env, info, 3, argv);
  unsigned char *input, *output;
  size_t input_length, output_length;
  if (gcm == NULL) return fail(env, "update on a finished or invalid context");
  if (!bytes_of(env, argv[1], &input, &input_length) || !bytes_of(env, argv[2], &output, &output_length) ||
      output_length < input_length)
    return fail(env, "update(gcm, input: Uint8Array, output: Uint8Array at least as long)");
  while (input_length > 0) {
    int step = input_length > INT_MAX / 2 ? INT_MAX / 2 : (int)input_length;
    int written = 0;
    if (EVP_CipherUpdate(gcm->evp, output, &written, input, step) != 1 || written != step)
      return fail(env, "EVP_CipherUpdate failed");
    input += step;
    output += step;
    input_length -= (size_t)step;
  }
  return NULL;
}

// seal(gcm): Buffer, the 16-byte tag; the context is finished.
static napi_value seal(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  gcm_t* gcm = context_call(env, info, 1, argv);
  if (gcm == NULL || !gcm->encrypt) return fail(env, "seal on a finished, invalid or opening context");
  void* tag = NULL;
  napi_value result;
  CHECK(napi_create_buffer(env, TAG_BYTES, &tag, &result));
  unsigned char none[1];
  int written = 0;
  bool ok = EVP_CipherFinal_ex(gcm->evp, none, &written) == 1 &&
            EVP_CIPHER_CTX_ctrl(gcm->evp, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, tag) == 1;
  finish(gcm);
  return ok ? result : fail(env, "EVP_CipherFinal_ex failed");
}

// verify(gcm, tag: Uint8Array): boolean, whether everything updated so far carries this tag; the
// context is finished.
static napi_value verify(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  gcm_t* gcm = context_call(env, info, 2, argv);
  unsigned char* tag;
  size_t tag_length;
  if (gcm == NULL || gcm->encrypt) return fail(env, "verify on a finished, invalid or sealing context");
  if (!bytes_of(env, argv[1], &tag, &tag_length) || tag_length != TAG_BYTES)
    return fail(env, "verify(gcm, tag: 16 bytes)");
  unsigned char none[1];
  int written = 0;
  bool ok = EVP_CIPHER_CTX_ctrl(gcm->evp, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag) == 1 &&
            EVP_CipherFinal_ex(gcm->evp, none, &written) == 1;
  finish(gcm);
  napi_value result;
  CHECK(napi_get_boolean(env, ok, &result));
  return result;
}

// ---- Output blocks ----------------------------------------------------------------------------------
// Every output the stream hands downstream is the consumer's for as long as it likes (a test may collect
// every chunk), so no output memory may be written again until the garbage collector has proved that no
// view of it is left. Fresh buffers from malloc keep landing on fresh pages (glibc hands memory that V8
// frees in bulk after a GC back to the kernel: a page fault per 4 KiB, more than the cipher costs), so
// the addon recycles its own blocks. block(size) wraps one in an external Buffer and keeps a weak
// reference to that Buffer's ArrayBuffer (every subarray carved from the block holds the ArrayBuffer).
//
// Two signals say a block is dead, and whichever comes first returns its memory:
// - the weak reference reads empty. V8 clears it during the GC itself, so the next block() call can
//   reuse the memory at once. This is the signal that matters: node runs external-buffer finalizers
//   from a later event-loop turn (a thread-safe immediate), and a stream fed from memory can run for a
//   gigabyte on microtasks and nextTicks alone without ever turning the loop.
// - the Buffer's finalizer. It is node's word that the backing store is gone; by then the memory may
//   long have been reused through the first signal, so a lease records who returned it.
// Returned memory goes onto a free list (at most POOL_KEEP_BYTES, beyond that free()); the list, the
// counters and each lease's flags are guarded by one mutex in case a finalizer ever runs off the main
// thread. The memory is also reported to V8 (napi_adjust_external_memory) while a block is live, so
// that allocating blocks brings the next GC closer.
#define POOL_KEEP_BYTES ((size_t)32 * 1024 * 1024)
// The newest leases checked for a cleared weak reference when the free list is empty, so that a
// consumer holding thousands of blocks does not make every call walk all of them. Blocks die young or
// not at all (a scavenge finds the ones carved since the last); older ones come back through their
// finalizers.
#define SCAN_PER_BLOCK 64

typedef struct free_block {
  struct free_block* next;
} free_block_t;

typedef struct {
  unsigned char* memory;
  size_t size;
  napi_ref ref;   // weak, to the block's ArrayBuffer; main thread only
  bool listed;    // still on its env's lease list (the list owns the lease until it is taken off)
  bool finalized; // the Buffer's finalizer ran (it owns the lease from then on unless still listed)
  bool returned;  // the memory went back (reused or pooled); whoever comes second leaves it alone
} lease_t;

typedef struct {
  lease_t** items;
  size_t count;
  size_t capacity;
  size_t since_nudge;  // block bytes made since the last nudge (see nudge())
} blocks_t;  // per env (each worker thread loads its own instance)

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static free_block_t* pool_head = NULL;
static size_t pool_block_bytes = 0;  // the size of every block on the free list
static size_t pool_kept_bytes = 0;
// Counters for tests and benchmarks.
static double stat_allocated = 0;  // blocks malloc'd
static double stat_reused = 0;     // blocks made over recycled memory
static double stat_collected = 0;  // blocks whose weak reference read empty before their finalizer ran
static double stat_finalized = 0;  // finalizers run
static double stat_live_bytes = 0; // memory of blocks not yet returned

// Under pool_lock: a block from the free list, or NULL.
static void* pool_pop_locked(size_t size) {
  if (pool_head == NULL || pool_block_bytes != size) return NULL;
  void* memory = pool_head;
  pool_head = pool_head->next;
  pool_kept_bytes -= size;
  return memory;
}

// Under pool_lock: puts memory on the free list, or returns it to be freed (outside the lock).
static void* pool_push_locked(void* memory, size_t size) {
  if (pool_block_bytes != size) {
    // Another block size (tests try several): the list keeps one size, so the old one goes.
    while (pool_head != NULL) {
      free_block_t* next = pool_head->next;
      free(pool_head);
      pool_head = next;
    }
    pool_kept_bytes = 0;
    pool_block_bytes = size;
  }
  if (pool_kept_bytes + size > POOL_KEEP_BYTES) return memory;
  free_block_t* block = memory;
  block->next = pool_head;
  pool_head = block;
  pool_kept_bytes += size;
  return NULL;
}

static void block_finalize(napi_env env, void* data, void* hint) {
  (void)data;
  lease_t* lease = hint;
  void* to_free = NULL;
  bool was_live = false;
  pthread_mutex_lock(&pool_lock);
  stat_finalized++;
  lease->finalized = true;
  if (!lease->returned) {
    lease->returned = true;
    was_live = true;
    stat_live_bytes -= (double)lease->size;
    to_free = pool_push_locked(lease->memory, lease->size);
  }
  bool drop = !lease->listed;
  size_t size = lease->size;
  pthread_mutex_unlock(&pool_lock);
  free(to_free);
  if (drop) free(lease);
  int64_t adjusted = 0;
  if (was_live && env != NULL) napi_adjust_external_memory(env, -(int64_t)size, &adjusted);
}

// Takes leases[index] off the list (main thread; its weak reference has read empty) and returns its
// memory to the free list unless its finalizer did already.
static void reclaim(napi_env env, blocks_t* blocks, size_t index) {
  lease_t* lease = blocks->items[index];
  // Removed in order: the list stays oldest first, so take() pools the newest block last.
  blocks->count--;
  memmove(&blocks->items[index], &blocks->items[index + 1], (blocks->count - index) * sizeof(lease_t*));
  napi_delete_reference(env, lease->ref);
  lease->ref = NULL;
  void* to_free = NULL;
  bool was_live = false;
  pthread_mutex_lock(&pool_lock);
  lease->listed = false;
  if (!lease->returned) {
    lease->returned = true;
    was_live = true;
    stat_collected++;
    stat_live_bytes -= (double)lease->size;
    to_free = pool_push_locked(lease->memory, lease->size);
  }
  bool drop = lease->finalized;
  size_t size = lease->size;
  pthread_mutex_unlock(&pool_lock);
  free(to_free);
  if (drop) free(lease);
  int64_t adjusted = 0;
  if (was_live) napi_adjust_external_memory(env, -(int64_t)size, &adjusted);
}

// Memory for a block of `size`: the most recently returned one. When the free list is empty, the
// newest leases whose weak references read empty are reclaimed onto it first (the newest last, so
// the block written most recently, likeliest still in cache, is reused first); else malloc.
static void* take(napi_env env, blocks_t* blocks, size_t size) {
  pthread_mutex_lock(&pool_lock);
  bool empty = pool_head == NULL || pool_block_bytes != size;
  pthread_mutex_unlock(&pool_lock);
  if (empty) {
    // In a scope of its own: a handle to a live block left open would keep that block alive through
    // the scavenge this call's nudge may start, promoting it to where only a mark-compact finds it.
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return NULL;
    size_t index = blocks->count > SCAN_PER_BLOCK ? blocks->count - SCAN_PER_BLOCK : 0;
    while (index < blocks->count) {
      napi_value value = NULL;
      if (napi_get_reference_value(env, blocks->items[index]->ref, &value) == napi_ok && value == NULL)
        reclaim(env, blocks, index);  // the next lease moved into this slot
      else
        index++;
    }
    napi_close_handle_scope(env, scope);
  }
  pthread_mutex_lock(&pool_lock);
  void* memory = pool_pop_locked(size);
  if (memory != NULL) stat_reused++;
  pthread_mutex_unlock(&pool_lock);
  if (memory == NULL) {
    memory = malloc(size);
    if (memory == NULL) return NULL;
    pthread_mutex_lock(&pool_lock);
    stat_allocated++;
    pthread_mutex_unlock(&pool_lock);
  }
  return memory;
}

static void give_back(void* memory, size_t size) {
  pthread_mutex_lock(&pool_lock);
  void* to_free = pool_push_locked(memory, size);
  pthread_mutex_unlock(&pool_lock);
  free(to_free);
}

static void blocks_finalize(napi_env env, void* data, void* hint) {
  (void)hint;
  blocks_t* blocks = data;
  // The env is going away; leases still listed are left to their Buffers' finalizers.
  for (size_t i = 0; i < blocks->count; i++) {
    lease_t* lease = blocks->items[i];
    napi_delete_reference(env, lease->ref);
    pthread_mutex_lock(&pool_lock);
    lease->listed = false;
    bool drop = lease->finalized;
    pthread_mutex_unlock(&pool_lock);
    if (drop) free(lease);
  }
  free(blocks->items);
  free(blocks);
}

// A nudge for the young-generation GC after every NUDGE_EVERY_BYTES of blocks. V8 starts a scavenge
// when an ArrayBuffer it allocates itself finds 32 MiB (twice the largest semi-space) of young
// backing stores live, which is how node's own Buffers get collected while a stream runs. Blocks are
// backing stores over external memory and never pass that check, so a stream from memory to memory
// that allocates nothing else had its blocks found dead only by the mark-compacts that V8's
// external-memory limit starts. The 1-byte ArrayBuffer made here passes through the check; the
// scavenge it may start clears the weak references of dead blocks, and take() reuses their memory.
//
// How many bytes pass between scavenges is how much memory the blocks cycle through, and that decides
// the cipher's speed: enciphering into 16 MiB of buffers in turn ran at openssl's speed here, into 40
// MiB or more (past what the caches keep) at 0.7x of it (measured). So before the check a phantom
// ArrayBuffer of PHANTOM_BYTES is made over a static region nobody reads or writes (it costs address
// space, not memory): each 1 MiB block then counts 3 MiB towards the 32, and a scavenge comes every
// ~11 MiB of output instead of every 32. Measured on `npm run bench -- seal`, in turns: seal 0.76-0.79
// of openssl per CPU-second with it, 0.52-0.54 before; a phantom of 1 MiB gave 0.74-0.77 and one of 3
// MiB 0.63-0.67, because streams' own objects then survive two scavenges, are promoted, and bring
// mark-compacts. A scavenge of a stream's few live objects costs ~0.2 ms. Should V8 drop the
// heuristic or refuse external ArrayBuffers, blocks are still found dead, by later collections.
#define NUDGE_EVERY_BYTES ((size_t)1024 * 1024)
#define PHANTOM_BYTES ((size_t)2 * 1024 * 1024)
static unsigned char phantom_region[PHANTOM_BYTES];

static void nudge(napi_env env, blocks_t* blocks, size_t size) {
  blocks->since_nudge += size;
  if (blocks->since_nudge < NUDGE_EVERY_BYTES) return;
  blocks->since_nudge = 0;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value phantom, check;
  void* data = NULL;
  napi_create_external_arraybuffer(env, phantom_region, PHANTOM_BYTES, NULL, NULL, &phantom);
  napi_create_arraybuffer(env, 1, &data, &check);
  napi_close_handle_scope(env, scope);
}

// block(size: number): Buffer of `size` uninitialized bytes over recycled memory; see above.
static napi_value block(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t requested = 0;
  if (argc < 1 || napi_get_value_int64(env, argv[0], &requested) != napi_ok || requested < 64 ||
      requested > (int64_t)1 << 30)
    return fail(env, "block(size: 64 bytes to 1 GiB)");
  size_t size = (size_t)requested;
  blocks_t* blocks = NULL;
  CHECK(napi_get_instance_data(env, (void**)&blocks));
  if (blocks->count == blocks->capacity) {
    size_t capacity = blocks->capacity ? blocks->capacity * 2 : 64;
    lease_t** items = realloc(blocks->items, capacity * sizeof(lease_t*));
    if (items == NULL) return fail(env, "out of memory");
    blocks->items = items;
    blocks->capacity = capacity;
  }
  lease_t* lease = calloc(1, sizeof(lease_t));
  void* memory = lease ? take(env, blocks, size) : NULL;
  if (memory == NULL) {
    free(lease);
    return fail(env, "out of memory");
  }
  lease->memory = memory;
  lease->size = size;
  napi_value result, arraybuffer;
  if (napi_create_external_buffer(env, size, memory, block_finalize, lease, &result) != napi_ok) {
    give_back(memory, size);
    free(lease);
    return fail(env, "napi_create_external_buffer failed");
  }
  // From here the finalizer will run; the lease is listed until its weak reference reads empty.
  CHECK(napi_get_typedarray_info(env, result, NULL, NULL, NULL, &arraybuffer, NULL));
  CHECK(napi_create_reference(env, arraybuffer, 0, &lease->ref));
  pthread_mutex_lock(&pool_lock);
  lease->listed = true;
  stat_live_bytes += (double)size;
  pthread_mutex_unlock(&pool_lock);
  blocks->items[blocks->count++] = lease;
  nudge(env, blocks, size);
  int64_t adjusted = 0;
  CHECK(napi_adjust_external_memory(env, (int64_t)size, &adjusted));
  return result;
}

static bool set_number(napi_env env, napi_value object, const char* name, double value) {
  napi_value number;
  return napi_create_double(env, value, &number) == napi_ok &&
         napi_set_named_property(env, object, name, number) == napi_ok;
}

// blockStats(): counters since load (process-wide), for tests and benchmarks.
static napi_value block_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  CHECK(napi_create_object(env, &result));
  pthread_mutex_lock(&pool_lock);
  double values[] = {stat_allocated, stat_reused, stat_collected, stat_finalized, stat_live_bytes,
                     (double)pool_kept_bytes};
  pthread_mutex_unlock(&pool_lock);
  const char* names[] = {"allocated", "reused", "collected", "finalized", "liveBytes", "pooledBytes"};
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
    if (!set_number(env, result, names[i], values[i])) return fail(env, "blockStats failed");
  return result;
}

// ---- Whole files, off the main thread -----------------------------------------------------------
// sealFile and openFile run one blob file through AES-256-GCM on a libuv worker thread: read into one
// buffer, hash and encipher it in place, write it out, repeat. Nothing reaches the JavaScript heap, so
// memory stays at one buffer per call, the main thread stays free, and two calls use two cores. This is
// the launcher's moment of release (every staged preload decrypted from the cache into the new tree)
// and push --preload's sealing of large files. The caller opens and closes both descriptors and keeps
// them open until the promise settles.
//
// FILE_BUFFER_BYTES: small enough that the buffer is hashed, enciphered and written while it is still
// in L2 (1 MiB per core here). 64 KiB, 256 KiB and 1 MiB measured alike within the noise; reading the
// file through mmap instead of read() (no copy out of the page cache) did not measure better either,
// and a file truncated under a mapping would kill the process with SIGBUS instead of failing a call.
#define FILE_BUFFER_BYTES ((size_t)256 * 1024)

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  bool encrypt;
  int in_fd;
  int out_fd;  // -1: decrypt and check, write nothing
  bool hash;   // SHA-256 over the sealed bytes (read when opening, written when sealing)
  unsigned char key[KEY_BYTES];
  unsigned char nonce[NONCE_BYTES];
  // Results.
  const char* failed_call;  // the call that failed, NULL on success
  int failed_errno;
  bool authentic;           // openFile: the tag verified
  double sealed_bytes;      // the sealed blob's size (nonce, ciphertext and tag)
  double plain_bytes;
  unsigned char digest[32];
} file_job_t;

static bool fail_job(file_job_t* job, const char* call, int error) {
  job->failed_call = call;
  job->failed_errno = error;
  return false;
}

static bool read_fully(file_job_t* job, unsigned char* into, size_t length, off_t offset, size_t* got) {
  *got = 0;
  while (*got < length) {
    ssize_t n = pread(job->in_fd, into + *got, length - *got, offset + (off_t)*got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_job(job, "read", errno);
    if (n == 0) break;
    *got += (size_t)n;
  }
  return true;
}

static bool write_fully(file_job_t* job, const unsigned char* from, size_t length) {
  if (job->out_fd < 0) return true;
  while (length > 0) {
    ssize_t n = write(job->out_fd, from, length);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_job(job, "write", errno);
    from += n;
    length -= (size_t)n;
  }
  return true;
}

static bool cipher_in_place(file_job_t* job, EVP_CIPHER_CTX* evp, unsigned char* data, size_t length) {
  int written = 0;
  if (EVP_CipherUpdate(evp, data, &written, data, (int)length) != 1 || (size_t)written != length)
    return fail_job(job, "EVP_CipherUpdate", 0);
  return true;
}

// Plaintext from in_fd (read to its end) to `nonce | ciphertext | tag` on out_fd.
static bool seal_file(file_job_t* job, EVP_CIPHER_CTX* evp, EVP_MD_CTX* md, unsigned char* buffer) {
  if (md && EVP_DigestUpdate(md, job->nonce, NONCE_BYTES) != 1) return fail_job(job, "EVP_DigestUpdate", 0);
  if (!write_fully(job, job->nonce, NONCE_BYTES)) return false;
  off_t offset = 0;
  for (;;) {
    size_t got = 0;
    if (!read_fully(job, buffer, FILE_BUFFER_BYTES, offset, &got)) return false;
    if (got == 0) break;
    offset += (off_t)got;
    if (!cipher_in_place(job, evp, buffer, got)) return false;
    if (md && EVP_DigestUpdate(md, buffer, got) != 1) return fail_job(job, "EVP_DigestUpdate", 0);
    if (!write_fully(job, buffer, got)) return false;
  }
  unsigned char tag[TAG_BYTES];
  int written = 0;
  if (EVP_CipherFinal_ex(evp, tag, &written) != 1 ||
      EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, tag) != 1)
    return fail_job(job, "EVP_CipherFinal_ex", 0);
  if (md && EVP_DigestUpdate(md, tag, TAG_BYTES) != 1) return fail_job(job, "EVP_DigestUpdate", 0);
  job->plain_bytes = (double)offset;
  job->sealed_bytes = (double)offset + NONCE_BYTES + TAG_BYTES;
  return write_fully(job, tag, TAG_BYTES);
}

// `nonce | ciphertext | tag` from in_fd (its size from fstat) to plaintext on out_fd. A blob shorter
// than nonce and tag is not authentic; its bytes are still hashed, so the caller can name a digest.
static bool open_file(file_job_t* job, EVP_CIPHER_CTX* evp, EVP_MD_CTX* md, unsigned char* buffer) {
  struct stat info;
  if (fstat(job->in_fd, &info) != 0) return fail_job(job, "fstat", errno);
  off_t size = info.st_size;
  job->sealed_bytes = (double)size;
  if (size < NONCE_BYTES + TAG_BYTES) {
    size_t got = 0;
    if (!read_fully(job, buffer, (size_t)size, 0, &got)) return false;
    if (md && EVP_DigestUpdate(md, buffer, got) != 1) return fail_job(job, "EVP_DigestUpdate", 0);
    return true;
  }
  unsigned char tag[TAG_BYTES];
  size_t got = 0, got_tag = 0;
  if (!read_fully(job, job->nonce, NONCE_BYTES, 0, &got) ||
      !read_fully(job, tag, TAG_BYTES, size - TAG_BYTES, &got_tag))
    return false;
  if (got != NONCE_BYTES || got_tag != TAG_BYTES) return fail_job(job, "read", EIO);  // shrank under us
  if (EVP_CipherInit_ex(evp, NULL, NULL, NULL, job->nonce, 0) != 1 ||  // the key is set, the IV now
      EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag) != 1)
    return fail_job(job, "EVP_CipherInit_ex", 0);
  if (md && EVP_DigestUpdate(md, job->nonce, NONCE_BYTES) != 1) return fail_job(job, "EVP_DigestUpdate", 0);
  off_t end = size - TAG_BYTES;
  for (off_t offset = NONCE_BYTES; offset < end;) {
    size_t want = (size_t)(end - offset) < FILE_BUFFER_BYTES ? (size_t)(end - offset) : FILE_BUFFER_BYTES;
    if (!read_fully(job, buffer, want, offset, &got)) return false;
    if (got != want) return fail_job(job, "read", EIO);  // shrank under us
    offset += (off_t)got;
    if (md && EVP_DigestUpdate(md, buffer, got) != 1) return fail_job(job, "EVP_DigestUpdate", 0);
    if (!cipher_in_place(job, evp, buffer, got)) return false;
    if (!write_fully(job, buffer, got)) return false;
  }
  if (md && EVP_DigestUpdate(md, tag, TAG_BYTES) != 1) return fail_job(job, "EVP_DigestUpdate", 0);
  job->plain_bytes = (double)(end - NONCE_BYTES);
  int written = 0;
  unsigned char none[1];
  job->authentic = EVP_CipherFinal_ex(evp, none, &written) == 1;
  return true;
}

static void file_execute(napi_env env, void* data) {
  (void)env;
  file_job_t* job = data;
  unsigned char* buffer = malloc(FILE_BUFFER_BYTES);
  EVP_CIPHER_CTX* evp = EVP_CIPHER_CTX_new();
  EVP_MD_CTX* md = job->hash ? EVP_MD_CTX_new() : NULL;
  posix_fadvise(job->in_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  if (buffer == NULL || evp == NULL || (job->hash && md == NULL)) {
    fail_job(job, "malloc", ENOMEM);
  } else if (EVP_CipherInit_ex(evp, EVP_aes_256_gcm(), NULL, job->key, job->encrypt ? job->nonce : NULL,
                                job->encrypt) != 1 ||
             (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)) {
    fail_job(job, "EVP_CipherInit_ex", 0);
  } else if (job->encrypt ? seal_file(job, evp, md, buffer) : open_file(job, evp, md, buffer)) {
    unsigned int length = 0;
    if (md && EVP_DigestFinal_ex(md, job->digest, &length) != 1) fail_job(job, "EVP_DigestFinal_ex", 0);
  }
  OPENSSL_cleanse(job->key, KEY_BYTES);
  if (buffer) OPENSSL_cleanse(buffer, FILE_BUFFER_BYTES);  // plaintext
  free(buffer);
  EVP_CIPHER_CTX_free(evp);
  EVP_MD_CTX_free(md);
  ERR_clear_error();  // this thread's queue; node's crypto on the main thread never sees it
}

static void file_complete(napi_env env, napi_status status, void* data) {
  file_job_t* job = data;
  napi_value result = NULL;
  if (status != napi_ok) {
    job->failed_call = "napi_async_work";
    job->failed_errno = 0;
  }
  if (job->failed_call != NULL) {
    char message[160];
    snprintf(message, sizeof message, "%s failed%s%s", job->failed_call, job->failed_errno ? ": " : "",
             job->failed_errno ? strerror(job->failed_errno) : "");
    napi_value text, code;
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text);
    napi_create_string_utf8(env, "ERR_SPLINTER_SEAL_FILE", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, text, &result);
    set_number(env, result, "errno", job->failed_errno);
    napi_reject_deferred(env, job->deferred, result);
  } else {
    napi_create_object(env, &result);
    napi_value flag, hex;
    set_number(env, result, "sealedBytes", job->sealed_bytes);
    set_number(env, result, "plainBytes", job->plain_bytes);
    napi_get_boolean(env, job->encrypt || job->authentic, &flag);
    napi_set_named_property(env, result, "authentic", flag);
    if (job->hash) {
      char text[65];
      for (int i = 0; i < 32; i++) snprintf(text + 2 * i, 3, "%02x", job->digest[i]);
      napi_create_string_utf8(env, text, 64, &hex);
      napi_set_named_property(env, result, "sha256", hex);
    }
    napi_resolve_deferred(env, job->deferred, result);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static bool fd_of(napi_env env, napi_value value, int* fd, bool allow_none) {
  int32_t number = 0;
  if (napi_get_value_int32(env, value, &number) != napi_ok) return false;
  if (number < (allow_none ? -1 : 0)) return false;
  *fd = number;
  return true;
}

// sealFile(inFd, outFd, key: 32 bytes, nonce: 12 bytes): Promise<{ sealedBytes, plainBytes, sha256 }>
// openFile(inFd, outFd | -1, key: 32 bytes, hash: boolean):
//   Promise<{ sealedBytes, plainBytes, authentic, sha256? }>
// Both write from the descriptors' current positions (open them fresh); read with explicit offsets.
static napi_value start_file_job(napi_env env, napi_callback_info info, bool encrypt) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  file_job_t* job = calloc(1, sizeof(file_job_t));
  if (job == NULL) return fail(env, "out of memory");
  job->encrypt = encrypt;
  unsigned char *key, *nonce;
  size_t key_length, nonce_length;
  bool valid = argc >= 4 && fd_of(env, argv[0], &job->in_fd, false) &&
               fd_of(env, argv[1], &job->out_fd, !encrypt) && bytes_of(env, argv[2], &key, &key_length) &&
               key_length == KEY_BYTES;
  if (valid && encrypt) {
    valid = bytes_of(env, argv[3], &nonce, &nonce_length) && nonce_length == NONCE_BYTES;
    if (valid) memcpy(job->nonce, nonce, NONCE_BYTES);
    job->hash = true;
  } else if (valid) {
    valid = napi_get_value_bool(env, argv[3], &job->hash) == napi_ok;
  }
  if (!valid) {
    free(job);
    return encrypt ? fail(env, "sealFile(inFd, outFd, key: 32 bytes, nonce: 12 bytes)")
                   : fail(env, "openFile(inFd, outFd or -1, key: 32 bytes, hash: boolean)");
  }
  memcpy(job->key, key, KEY_BYTES);
  napi_value promise, name;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, encrypt ? "splinter:sealFile" : "splinter:openFile", NAPI_AUTO_LENGTH,
                              &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, file_execute, file_complete, job, &job->work) != napi_ok) {
    OPENSSL_cleanse(job->key, KEY_BYTES);
    free(job);
    return fail(env, "could not start the file job");
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    OPENSSL_cleanse(job->key, KEY_BYTES);
    free(job);
    return fail(env, "could not queue the file job");
  }
  return promise;
}

static napi_value seal_file_call(napi_env env, napi_callback_info info) {
  return start_file_job(env, info, true);
}

static napi_value open_file_call(napi_env env, napi_callback_info info) {
  return start_file_job(env, info, false);
}

NAPI_MODULE_INIT() {
  blocks_t* blocks = calloc(1, sizeof(blocks_t));
  if (blocks == NULL || napi_set_instance_data(env, blocks, blocks_finalize, NULL) != napi_ok) {
    free(blocks);
    return NULL;
  }
  const napi_property_descriptor properties[] = {
      {"create", NULL, create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"update", NULL, update, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seal", NULL, seal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"verify", NULL, verify, NULL, NULL, NULL, napi_enumerable, NULL},
      {"block", NULL, block, NULL, NULL, NULL, napi_enumerable, NULL},
      {"blockStats", NULL, block_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sealFile", NULL, seal_file_call, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openFile", NULL, open_file_call, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties) != napi_ok)
    return NULL;
  return exports;
}
