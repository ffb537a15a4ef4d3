#ifndef CLIBCRYPTO_SHIM_H
#define CLIBCRYPTO_SHIM_H
/* OpenSSL's libcrypto, located through pkg-config (see Package.swift: systemLibrary CLibcrypto). Only SHA-256's
 * low-level interface is used (KeyDerivation's prepared HMAC): its context is a plain struct, so a prepared hash
 * state is copied by value. OpenSSL 3 deprecates that interface in favour of EVP, whose contexts are heap objects
 * (the allocation and copy per MAC that this avoids); it is still built and exported, so the warning is silenced. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#endif
