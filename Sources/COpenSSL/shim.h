// OpenSSL (libssl-dev), plus functions for what its headers define as
// macros, which Swift cannot call.
#ifndef EVPL_COPENSSL_SHIM_H
#define EVPL_COPENSSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <time.h>

static inline int cevpl_ssl_ctx_set_min_version(SSL_CTX *context, int version) {
    return (int)SSL_CTX_set_min_proto_version(context, version);
}

static inline int cevpl_ssl_ctx_set_max_version(SSL_CTX *context, int version) {
    return (int)SSL_CTX_set_max_proto_version(context, version);
}

static inline int cevpl_ssl_set_server_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

static inline int cevpl_ssl_ctx_add_chain_certificate(SSL_CTX *context, X509 *certificate) {
    return (int)SSL_CTX_add1_chain_cert(context, certificate);
}

static inline void cevpl_ssl_ctx_set_partial_writes(SSL_CTX *context) {
    SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/// Key exchange over `groups` only ("X25519:P-256:P-384"). Returns 1, or
/// 0 when OpenSSL knows none of them.
static inline int cevpl_ssl_ctx_set_groups(SSL_CTX *context, const char *groups) {
    return (int)SSL_CTX_set1_groups_list(context, groups);
}

/// A server that picks the cipher suite by its own order of preference,
/// but ChaCha20-Poly1305 for a client that lists it first (one without AES
/// instructions).
static inline void cevpl_ssl_ctx_prefer_own_ciphers(SSL_CTX *context) {
    SSL_CTX_set_options(context, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
}

static inline void cevpl_bio_set_retry_read(BIO *bio) { BIO_set_retry_read(bio); }
static inline void cevpl_bio_clear_retry(BIO *bio) { BIO_clear_retry_flags(bio); }

static inline const int cevpl_tls1_2_version(void) { return TLS1_2_VERSION; }
static inline const int cevpl_tls1_3_version(void) { return TLS1_3_VERSION; }
static inline const int cevpl_bio_ctrl_flush(void) { return BIO_CTRL_FLUSH; }

/// Makes a self-signed ECDSA P-256 certificate for `common_name` with the
/// subjectAltName `alt_names` ("DNS:localhost,IP:127.0.0.1"), valid from now
/// for `days`, as PEM text in buffers the caller frees with
/// cevpl_openssl_free. Returns 1, or 0 with OpenSSL's error queue set.
static inline int cevpl_make_self_signed(const char *common_name, const char *alt_names, long days,
                                         char **certificate_pem, long *certificate_length,
                                         char **key_pem, long *key_length) {
    int ok = 0;
    EVP_PKEY *key = NULL;
    X509 *certificate = NULL;
    X509_EXTENSION *extension = NULL;
    BIO *certificate_bio = NULL, *key_bio = NULL;
    EVP_PKEY_CTX *key_context = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
    if (!key_context || EVP_PKEY_keygen_init(key_context) <= 0
        || EVP_PKEY_CTX_set_ec_paramgen_curve_nid(key_context, NID_X9_62_prime256v1) <= 0
        || EVP_PKEY_keygen(key_context, &key) <= 0) goto done;
    certificate = X509_new();
    if (!certificate || !X509_set_version(certificate, 2)
        || !ASN1_INTEGER_set(X509_get_serialNumber(certificate), (long)time(NULL))
        || !X509_gmtime_adj(X509_getm_notBefore(certificate), 0)
        || !X509_gmtime_adj(X509_getm_notAfter(certificate), days * 24 * 3600)
        || !X509_set_pubkey(certificate, key)) goto done;
    X509_NAME *name = X509_get_subject_name(certificate);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)common_name, -1, -1, 0)
        || !X509_set_issuer_name(certificate, name)) goto done;
    X509V3_CTX extension_context;
    X509V3_set_ctx_nodb(&extension_context);
    X509V3_set_ctx(&extension_context, certificate, certificate, NULL, NULL, 0);
    extension = X509V3_EXT_conf_nid(NULL, &extension_context, NID_subject_alt_name, alt_names);
    if (!extension || !X509_add_ext(certificate, extension, -1)) goto done;
    if (!X509_sign(certificate, key, EVP_sha256())) goto done;
    certificate_bio = BIO_new(BIO_s_mem());
    key_bio = BIO_new(BIO_s_mem());
    if (!certificate_bio || !key_bio || !PEM_write_bio_X509(certificate_bio, certificate)
        || !PEM_write_bio_PrivateKey(key_bio, key, NULL, NULL, 0, NULL, NULL)) goto done;
    char *data;
    *certificate_length = BIO_get_mem_data(certificate_bio, &data);
    *certificate_pem = OPENSSL_memdup(data, (size_t)*certificate_length);
    *key_length = BIO_get_mem_data(key_bio, &data);
    *key_pem = OPENSSL_memdup(data, (size_t)*key_length);
    ok = *certificate_pem != NULL && *key_pem != NULL;
done:
    BIO_free(certificate_bio);
    BIO_free(key_bio);
    X509_EXTENSION_free(extension);
    X509_free(certificate);
    EVP_PKEY_free(key);
    EVP_PKEY_CTX_free(key_context);
    return ok;
}

static inline void cevpl_openssl_free(void *pointer) { OPENSSL_free(pointer); }

/// Client session caching that hands every new session to the new-session
/// callback and keeps none inside OpenSSL.
static inline void cevpl_ssl_ctx_cache_client_sessions(SSL_CTX *context) {
    SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
}

static inline void cevpl_ssl_ctx_cache_nothing(SSL_CTX *context) {
    SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
}

/// A server that resumes no TLS 1.2 session: it issues no session tickets
/// and keeps no session cache. (TLS 1.3 tickets stop with
/// SSL_CTX_set_num_tickets(context, 0).)
static inline void cevpl_ssl_ctx_resume_nothing(SSL_CTX *context) {
    SSL_CTX_set_options(context, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
}

/// The SHA-256 of `certificate`'s SubjectPublicKeyInfo (DER) into `digest`
/// (32 bytes): the public key pin. Returns 1, or 0 on failure.
static inline int cevpl_public_key_sha256(X509 *certificate, unsigned char *digest) {
    unsigned char *der = NULL;
    int length = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(certificate), &der);
    if (length <= 0) return 0;
    unsigned int digest_length = 0;
    int ok = EVP_Digest(der, (size_t)length, digest, &digest_length, EVP_sha256(), NULL);
    OPENSSL_free(der);
    return ok == 1 && digest_length == 32;
}

#endif
