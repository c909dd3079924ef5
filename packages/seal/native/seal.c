// AES-256-GCM through the OpenSSL that node itself links (node exports its EVP symbols), enciphering
// into a buffer the caller passes (which may be the input itself) where node:crypto's Cipher.update
// allocates a fresh output and copies on every call. N-API only, so one build loads on node 20, 22, 24.
#include <limits.h>
#include <node_api.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>

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

NAPI_MODULE_INIT() {
  const napi_property_descriptor properties[] = {
      {"create", NULL, create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"update", NULL, update, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seal", NULL, seal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"verify", NULL, verify, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties) != napi_ok)
    return NULL;
  return exports;
}
