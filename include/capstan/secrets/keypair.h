#pragma once

// Asymmetric signing keys for the keyPair generator (OpenSSL's EVP API): RSA
// 2048/3072/4096, ECDSA P-256/P-384 and Ed25519.
//
// A keyPair key writes three data keys: <name> holds the private key (PEM,
// PKCS#8 "PRIVATE KEY"), publicKeyKey its public key (PEM, SubjectPublicKeyInfo
// "PUBLIC KEY") and jwksKey a JWK Set (RFC 7517) with the public key of <name>
// and, while <name>_previous exists (KeepPrevious grace), that of the previous
// key, so token verifiers accept tokens signed with either. The private key is
// the only generated value; the public key and the JWKS are derived from the
// private keys in the Secret each time one of them changes
// (DeriveKeyPairData), so they can never disagree with it.
//
// JWK members (RFC 7518 section 6, RFC 8037 for Ed25519): kty (RSA, EC, OKP),
// kid (the RFC 7638 SHA-256 thumbprint), use "sig", alg (RS256 or the
// spec's jwsAlgorithm for RSA; ES256 for P-256, ES384 for P-384; EdDSA), n/e
// (RSA), crv/x/y (EC, coordinates padded to the field size), crv/x (Ed25519);
// every number base64url without padding.
//
// Randomness: key generation uses OpenSSL's own DRBG (the RandomSource of
// generator.h cannot feed OpenSSL's prime search).
//
// SECURITY: private keys only ever go into Secret data; errors name data keys
// and OpenSSL reasons, never key material. Temporary buffers holding a private
// key are OpenSSL secure-memory BIOs (cleared when freed).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "capstan/secrets/secret_rotation.h"
#include "nlohmann/json.hpp"

namespace capstan::secrets {

// A fresh private key, PEM (PKCS#8, unencrypted).
absl::StatusOr<std::string> GeneratePrivateKeyPem(const KeyPairGenerator& g);

// What a private key PEM implies for publication.
struct PublicKeyParts {
  std::string public_pem;  // SubjectPublicKeyInfo, PEM
  nlohmann::json jwk;      // members as listed above, kid included
};
// Reads a private key PEM (any of the supported types, whatever the spec says
// now: a previous key keeps its own type). `g` gives the RSA jwsAlgorithm.
absl::StatusOr<PublicKeyParts> DerivePublicKey(const std::string& private_pem,
                                               const KeyPairGenerator& g);

// RFC 7638 thumbprint of a JWK: base64url(SHA-256 of the required members in
// lexicographic order, no whitespace). Fails for an unknown kty.
absl::StatusOr<std::string> JwkThumbprint(const nlohmann::json& jwk);

// The data a Secret write must add for its keyPair keys: given the data before
// the write (base64 values, as the API returns them) and the write's data patch
// (base64 values; null removes), the derived keys (publicKeyKey,
// publicKeyKey_previous, jwksKey) whose value after the write differs from
// before, base64-encoded (null removes). Computed for a keyPair key only when
// the patch touches <name> or <name>_previous, or a derived key is missing.
absl::StatusOr<nlohmann::json> DeriveKeyPairData(const SecretRotationSpec& spec,
                                                 const nlohmann::json& data_before,
                                                 const nlohmann::json& patch);

}  // namespace capstan::secrets
