// Owning pointers for the OpenSSL objects server/identity/ handles, so that
// every early return frees what was made.
#ifndef LOCKBOX_SERVER_IDENTITY_OPENSSL_PTR_H_
#define LOCKBOX_SERVER_IDENTITY_OPENSSL_PTR_H_

#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <memory>

namespace lockbox::openssl {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
struct StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};

using Bio = std::unique_ptr<BIO, BioFree>;
using Cert = std::unique_ptr<X509, X509Free>;
using Store = std::unique_ptr<X509_STORE, StoreFree>;
using StoreCtx = std::unique_ptr<X509_STORE_CTX, StoreCtxFree>;
using CertStack = std::unique_ptr<STACK_OF(X509), StackFree>;

}  // namespace lockbox::openssl

#endif  // LOCKBOX_SERVER_IDENTITY_OPENSSL_PTR_H_
