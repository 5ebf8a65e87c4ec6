// What OpenSSL alone spends on a full TLS 1.3 handshake (ECDSA P-256
// certificate, X25519 key share), client and server each, with no sockets:
// the two ends talk through a BIO pair in one thread, and only the time
// inside SSL_do_handshake/SSL_read is counted. This is the floor under
// `evpl perf --mode handshake --tls`: whatever the event loop adds comes on
// top of it.
//
//   cc -O2 Benchmarks/HandshakeFloor/handshake-floor.c -o /tmp/handshake-floor -lssl -lcrypto
//   /tmp/handshake-floor CERT.pem KEY.pem [HANDSHAKES [TICKETS]]
//
// TICKETS: the session tickets the server sends after each handshake
// (OpenSSL's default 2; NIO-SSL's server sends none).
//
// CERT must be valid for "localhost" and self-signed (it is also the CA).

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CERT.pem KEY.pem [HANDSHAKES [TICKETS]]\n", argv[0]);
        return 2;
    }
    int count = argc > 3 ? atoi(argv[3]) : 2000;
    int tickets = argc > 4 ? atoi(argv[4]) : 2;
    SSL_CTX *server_context = SSL_CTX_new(TLS_server_method());
    SSL_CTX *client_context = SSL_CTX_new(TLS_client_method());
    if (SSL_CTX_use_certificate_chain_file(server_context, argv[1]) != 1
        || SSL_CTX_use_PrivateKey_file(server_context, argv[2], SSL_FILETYPE_PEM) != 1
        || SSL_CTX_load_verify_locations(client_context, argv[1], NULL) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_num_tickets(server_context, (size_t)tickets);
    SSL_CTX_set_min_proto_version(client_context, TLS1_3_VERSION);
    SSL_CTX_set_verify(client_context, SSL_VERIFY_PEER, NULL);
    double client_time = 0, server_time = 0;
    for (int index = 0; index < count; index++) {
        SSL *client = SSL_new(client_context), *server = SSL_new(server_context);
        BIO *client_end, *server_end;
        BIO_new_bio_pair(&client_end, 0, &server_end, 0);
        SSL_set_bio(client, client_end, client_end);
        SSL_set_bio(server, server_end, server_end);
        SSL_set_connect_state(client);
        SSL_set_accept_state(server);
        SSL_set1_host(client, "localhost");
        int client_done = 0, server_done = 0;
        for (int turn = 0; !(client_done && server_done); turn++) {
            if (turn > 20) {
                fprintf(stderr, "the handshake did not complete\n");
                ERR_print_errors_fp(stderr);
                return 1;
            }
            double start = seconds();
            client_done = client_done || SSL_do_handshake(client) == 1;
            client_time += seconds() - start;
            start = seconds();
            server_done = server_done || SSL_do_handshake(server) == 1;
            server_time += seconds() - start;
        }
        // The client reads the server's session tickets, as a real one does.
        char byte;
        double start = seconds();
        SSL_read(client, &byte, 1);
        client_time += seconds() - start;
        ERR_clear_error();
        SSL_free(client);
        SSL_free(server);
    }
    printf("%s, %d full TLS 1.3 handshakes, %d tickets each: client %.0f us, server %.0f us each\n",
           OpenSSL_version(OPENSSL_VERSION), count, tickets, client_time / count * 1e6, server_time / count * 1e6);
    return 0;
}
