#pragma once

// What the certificate tests share: owners of OpenSSL handles, a certificate read from PEM, a
// chain verified against one CA as the only trust anchor, a certificate's common name, and a file
// written with a given mode.
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <string>

namespace kspm::common {

template <auto kFree>
struct Deleter {
  template <typename T>
  void operator()(T* handle) const {
    kFree(handle);
  }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;

inline X509Ptr Cert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

// X509_V_OK when `ca_pem` alone, as trust anchor, verifies `leaf_pem` for `purpose`
// (X509_PURPOSE_SSL_CLIENT / _SSL_SERVER); otherwise the verification error.
inline int Verify(const std::string& ca_pem, const std::string& leaf_pem, int purpose) {
  const X509Ptr ca = Cert(ca_pem), leaf = Cert(leaf_pem);
  if (!ca || !leaf) return -1;
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (X509_STORE_add_cert(store.get(), ca.get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr) != 1 ||
      X509_STORE_CTX_set_purpose(ctx.get(), purpose) != 1) {
    return -1;
  }
  const int rc = X509_verify_cert(ctx.get());
  ERR_clear_error();
  return rc == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx.get());
}

inline std::string CommonName(X509* cert) {
  char buf[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof(buf)) <
      0) {
    return "";
  }
  return buf;
}

inline void Spit(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream(path) << text;
  ::chmod(path.c_str(), mode);
}

}  // namespace kspm::common
