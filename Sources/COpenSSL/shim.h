// OpenSSL (libssl-dev), plus functions for what its headers define as
// macros, which Swift cannot call.
#ifndef EVPL_COPENSSL_SHIM_H
#define EVPL_COPENSSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/bio.h>

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

static inline void cevpl_bio_set_retry_read(BIO *bio) { BIO_set_retry_read(bio); }
static inline void cevpl_bio_clear_retry(BIO *bio) { BIO_clear_retry_flags(bio); }

static inline const int cevpl_tls1_2_version(void) { return TLS1_2_VERSION; }
static inline const int cevpl_tls1_3_version(void) { return TLS1_3_VERSION; }
static inline const int cevpl_bio_ctrl_flush(void) { return BIO_CTRL_FLUSH; }

#endif
