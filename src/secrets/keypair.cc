#include "capstan/secrets/keypair.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "capstan/common/status_macros.h"

namespace capstan::secrets {
namespace {

using nlohmann::json;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct CtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Bio = std::unique_ptr<BIO, BioFree>;
using Bn = std::unique_ptr<BIGNUM, BnFree>;

// The reason of the newest OpenSSL error (library and reason strings, never data),
// and the queue cleared so the next call starts clean.
std::string OpenSslReason() {
  const unsigned long e = ERR_peek_last_error();
  std::string out = "no OpenSSL error recorded";
  if (e != 0) {
    const char* reason = ERR_reason_error_string(e);
    out = reason != nullptr ? reason : absl::StrCat("error ", e);
  }
  ERR_clear_error();
  return out;
}

absl::Status OpenSslError(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", OpenSslReason()));
}

std::string Base64Url(const unsigned char* p, size_t n) {
  return absl::WebSafeBase64Escape(std::string(reinterpret_cast<const char*>(p), n));
}

// What a BIO holds, copied out (the BIO is freed, and cleared if secure, by its owner).
std::string BioText(BIO* b) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  return n > 0 && data != nullptr ? std::string(data, static_cast<size_t>(n)) : std::string();
}

// A passphrase callback that refuses: an encrypted PEM fails instead of
// prompting on a terminal.
int NoPassphrase(char*, int, int, void*) { return -1; }

absl::StatusOr<std::string> BigNumParam(const EVP_PKEY* key, const char* name, int pad_to) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1 || raw == nullptr) {
    return OpenSslError(absl::StrCat("reading ", name));
  }
  Bn bn(raw);
  const int n = std::max(BN_num_bytes(bn.get()), pad_to);
  std::string out(static_cast<size_t>(n), '\0');
  unsigned char* p = reinterpret_cast<unsigned char*>(out.data());
  if (BN_bn2binpad(bn.get(), p, n) != n) return OpenSslError(absl::StrCat("encoding ", name));
  return Base64Url(p, out.size());
}

std::string EcCurveFromGroup(const std::string& group) {
  if (group == "prime256v1" || group == "P-256" || group == "secp256r1") return "P-256";
  if (group == "secp384r1" || group == "P-384") return "P-384";
  return "";
}

std::optional<std::string> DecodeBase64(const json& v) {
  std::string out;
  if (!v.is_string() || !absl::Base64Unescape(v.get<std::string>(), &out)) return std::nullopt;
  return out;
}

void Wipe(std::string& s) { std::fill(s.begin(), s.end(), '\0'); }

}  // namespace

absl::StatusOr<std::string> GeneratePrivateKeyPem(const KeyPairGenerator& g) {
  const char* algorithm = "RSA";
  switch (g.type) {
    case KeyPairType::kRsa:
      algorithm = "RSA";
      break;
    case KeyPairType::kEc:
      algorithm = "EC";
      break;
    case KeyPairType::kEd25519:
      algorithm = "ED25519";
      break;
  }
  std::unique_ptr<EVP_PKEY_CTX, CtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, algorithm, nullptr));
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1) {
    return OpenSslError(absl::StrCat("starting ", algorithm, " key generation"));
  }
  if (g.type == KeyPairType::kRsa &&
      EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), g.rsa_bits == 0 ? 2048 : g.rsa_bits) != 1) {
    return OpenSslError("setting the RSA key size");
  }
  if (g.type == KeyPairType::kEc) {
    const std::string curve = g.curve.empty() ? "P-256" : g.curve;
    if (curve != "P-256" && curve != "P-384") {
      return absl::InvalidArgumentError(absl::StrCat("unsupported curve ", curve));
    }
    if (EVP_PKEY_CTX_set_group_name(ctx.get(), curve.c_str()) != 1) {
      return OpenSslError(absl::StrCat("setting curve ", curve));
    }
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_generate(ctx.get(), &raw) != 1 || raw == nullptr) {
    return OpenSslError(absl::StrCat("generating a ", algorithm, " key"));
  }
  Pkey key(raw);
  Bio out(BIO_new(BIO_s_secmem()));
  if (out == nullptr || PEM_write_bio_PKCS8PrivateKey(out.get(), key.get(), nullptr, nullptr, 0,
                                                      nullptr, nullptr) != 1) {
    return OpenSslError("writing the private key PEM");
  }
  return BioText(out.get());
}

absl::StatusOr<PublicKeyParts> DerivePublicKey(const std::string& private_pem,
                                               const KeyPairGenerator& g) {
  Bio in(BIO_new_mem_buf(private_pem.data(), static_cast<int>(private_pem.size())));
  if (in == nullptr) return OpenSslError("reading the private key");
  Pkey key(PEM_read_bio_PrivateKey(in.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    ERR_clear_error();  // The reason could describe the input; say only that it failed.
    return absl::InvalidArgumentError("not an unencrypted PEM private key");
  }
  PublicKeyParts out;
  Bio pub(BIO_new(BIO_s_mem()));
  if (pub == nullptr || PEM_write_bio_PUBKEY(pub.get(), key.get()) != 1) {
    return OpenSslError("writing the public key PEM");
  }
  out.public_pem = BioText(pub.get());
  json& jwk = out.jwk;
  switch (EVP_PKEY_get_base_id(key.get())) {
    case EVP_PKEY_RSA: {
      ASSIGN_OR_RETURN(std::string n, BigNumParam(key.get(), OSSL_PKEY_PARAM_RSA_N, 0));
      ASSIGN_OR_RETURN(std::string e, BigNumParam(key.get(), OSSL_PKEY_PARAM_RSA_E, 0));
      jwk = {{"kty", "RSA"},
             {"alg", g.jws_algorithm.empty() ? "RS256" : g.jws_algorithm},
             {"n", n},
             {"e", e}};
      break;
    }
    case EVP_PKEY_EC: {
      char group[64] = {0};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group,
                                         sizeof(group), &len) != 1) {
        return OpenSslError("reading the EC curve");
      }
      const std::string crv = EcCurveFromGroup(std::string(group, len));
      if (crv.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("EC curve ", std::string(group, len), " is not P-256 or P-384"));
      }
      const int size = crv == "P-256" ? 32 : 48;
      ASSIGN_OR_RETURN(std::string x, BigNumParam(key.get(), OSSL_PKEY_PARAM_EC_PUB_X, size));
      ASSIGN_OR_RETURN(std::string y, BigNumParam(key.get(), OSSL_PKEY_PARAM_EC_PUB_Y, size));
      jwk = {{"kty", "EC"},
             {"alg", crv == "P-256" ? "ES256" : "ES384"},
             {"crv", crv},
             {"x", x},
             {"y", y}};
      break;
    }
    case EVP_PKEY_ED25519: {
      unsigned char raw[32];
      size_t len = sizeof(raw);
      if (EVP_PKEY_get_raw_public_key(key.get(), raw, &len) != 1 || len != sizeof(raw)) {
        return OpenSslError("reading the Ed25519 public key");
      }
      jwk = {{"kty", "OKP"}, {"alg", "EdDSA"}, {"crv", "Ed25519"}, {"x", Base64Url(raw, len)}};
      break;
    }
    default:
      return absl::InvalidArgumentError("the key is not RSA, EC or Ed25519");
  }
  jwk["use"] = "sig";
  ASSIGN_OR_RETURN(std::string kid, JwkThumbprint(jwk));
  jwk["kid"] = kid;
  return out;
}

absl::StatusOr<std::string> JwkThumbprint(const json& jwk) {
  const std::string kty = jwk.value("kty", "");
  std::vector<const char*> members;
  if (kty == "RSA") {
    members = {"e", "kty", "n"};
  } else if (kty == "EC") {
    members = {"crv", "kty", "x", "y"};
  } else if (kty == "OKP") {
    members = {"crv", "kty", "x"};
  } else {
    return absl::InvalidArgumentError(absl::StrCat("no thumbprint for kty \"", kty, "\""));
  }
  // nlohmann's object keeps keys sorted and dump() writes no whitespace: exactly
  // RFC 7638's canonical form for these members (base64url needs no escaping).
  json canonical = json::object();
  for (const char* m : members) {
    if (!jwk.contains(m) || !jwk[m].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("JWK member ", m, " missing"));
    }
    canonical[m] = jwk[m];
  }
  const std::string text = canonical.dump();
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return Base64Url(digest, sizeof(digest));
}

absl::StatusOr<json> DeriveKeyPairData(const SecretRotationSpec& spec, const json& data_before,
                                       const json& patch) {
  json out = json::object();
  const json before = data_before.is_object() ? data_before : json::object();
  auto after = [&](const std::string& k) -> json {
    if (patch.is_object() && patch.contains(k)) return patch[k];
    return before.contains(k) ? before[k] : json();
  };
  auto set = [&](const std::string& k, const std::optional<std::string>& value) {
    const json v = value ? json(absl::Base64Escape(*value)) : json();
    const json was = before.contains(k) ? before[k] : json();
    if (v != was) out[k] = v;
  };
  for (const KeySpec& k : spec.keys) {
    if (k.kind != KeySpec::Kind::kKeyPair) continue;
    const std::string pub = PublicKeyDataKey(k);
    const std::string jwks = JwksDataKey(k);
    const std::string prev = PreviousKey(k.name);
    const bool touched = patch.is_object() && (patch.contains(k.name) || patch.contains(prev));
    const bool missing =
        !after(k.name).is_null() && (!before.contains(pub) || !before.contains(jwks));
    if (!touched && !missing) continue;
    json keys = json::array();
    std::optional<std::string> current_pub, previous_pub;
    for (const auto& [data_key, slot] :
         {std::pair{k.name, &current_pub}, std::pair{prev, &previous_pub}}) {
      const json v = after(data_key);
      if (v.is_null()) continue;
      std::optional<std::string> pem = DecodeBase64(v);
      if (!pem) {
        return absl::InvalidArgumentError(absl::StrCat("data key ", data_key, ": not base64"));
      }
      absl::StatusOr<PublicKeyParts> parts = DerivePublicKey(*pem, k.key_pair);
      Wipe(*pem);
      if (!parts.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("data key ", data_key, ": ", parts.status().message()));
      }
      *slot = parts->public_pem;
      // The previous key is listed only while it differs from the current one.
      bool dup = false;
      for (const json& j : keys) dup = dup || j["kid"] == parts->jwk["kid"];
      if (!dup) keys.push_back(std::move(parts->jwk));
    }
    set(pub, current_pub);
    set(PreviousKey(pub), previous_pub);
    set(jwks, current_pub ? std::optional<std::string>(json{{"keys", keys}}.dump()) : std::nullopt);
  }
  return out;
}

}  // namespace capstan::secrets
