/* tls_certs.h - certificates made at test time for the unit tests over
 * TLS: a CA, another CA, a server certificate for crisp.test and 127.0.0.1,
 * a client certificate from the CA and a stranger's from the other CA (EC
 * P-256 keys: all of them in milliseconds), and server and client
 * contexts built from them. pki_make() first. */
#ifndef CRISP_TEST_TLS_CERTS_H
#define CRISP_TEST_TLS_CERTS_H

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "unit.h"

struct pki {
    EVP_PKEY *ca_key, *other_key, *server_key, *client_key, *stranger_key;
    X509 *ca, *other, *server, *client, *stranger;
};

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    CHECK(ex != NULL);
    X509_add_ext(x, ex, -1);
    X509_EXTENSION_free(ex);
}

/* A certificate for key, signed by issuer (itself when NULL). */
static X509 *mkcert(EVP_PKEY *key, const char *cn, const char *san, X509 *issuer,
                    EVP_PKEY *issuer_key)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    add_ext(x, &ctx, NID_basic_constraints, issuer ? "CA:FALSE" : "critical,CA:TRUE");
    if (!issuer)
        add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (san)
        add_ext(x, &ctx, NID_subject_alt_name, san);
    CHECK(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static void pki_make(struct pki *p)
{
    p->ca_key = EVP_EC_gen("P-256");
    p->other_key = EVP_EC_gen("P-256");
    p->server_key = EVP_EC_gen("P-256");
    p->client_key = EVP_EC_gen("P-256");
    p->stranger_key = EVP_EC_gen("P-256");
    p->ca = mkcert(p->ca_key, "crisp test CA", NULL, NULL, NULL);
    p->other = mkcert(p->other_key, "another CA", NULL, NULL, NULL);
    p->server = mkcert(p->server_key, "crisp.test", "DNS:crisp.test,IP:127.0.0.1", p->ca, p->ca_key);
    p->client = mkcert(p->client_key, "kubelet", NULL, p->ca, p->ca_key);
    p->stranger = mkcert(p->stranger_key, "stranger", NULL, p->other, p->other_key);
}

static void pki_free(struct pki *p)
{
    X509 *certs[] = {p->ca, p->other, p->server, p->client, p->stranger};
    EVP_PKEY *keys[] = {p->ca_key, p->other_key, p->server_key, p->client_key, p->stranger_key};
    for (int i = 0; i < 5; i++) {
        X509_free(certs[i]);
        EVP_PKEY_free(keys[i]);
    }
}

static struct pki pki;

/* A server context: the server certificate; client certificates from the
 * test CA required when want_client. */
static SSL_CTX *server_ctx(int want_client)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    CHECK(SSL_CTX_use_certificate(ctx, pki.server) == 1);
    CHECK(SSL_CTX_use_PrivateKey(ctx, pki.server_key) == 1);
    if (want_client) {
        X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), pki.ca);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
}

/* A client context trusting `trust` (no verification when NULL), with an
 * optional client certificate. */
static SSL_CTX *client_ctx(X509 *trust, X509 *cert, EVP_PKEY *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (trust) {
        X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), trust);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (cert) {
        CHECK(SSL_CTX_use_certificate(ctx, cert) == 1);
        CHECK(SSL_CTX_use_PrivateKey(ctx, key) == 1);
    }
    return ctx;
}

#endif
