// The keyPair generator: keys generated, read back with OpenSSL, their public
// halves and JWKs checked against what OpenSSL reads from the private key, the
// RFC 7638 / RFC 8037 example thumbprints, and the derived data of each write.

#include "capstan/secrets/keypair.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "capstan/secrets/generator.h"
#include "capstan/secrets/rotation.h"
#include "gtest/gtest.h"

namespace capstan::secrets {
namespace {

using nlohmann::json;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Pkey ReadPrivate(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  Pkey k(PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr));
  BIO_free(b);
  return k;
}

Pkey ReadPublic(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  Pkey k(PEM_read_bio_PUBKEY(b, nullptr, nullptr, nullptr));
  BIO_free(b);
  return k;
}

std::string FromBase64Url(const std::string& s) {
  std::string out;
  EXPECT_TRUE(absl::WebSafeBase64Unescape(s, &out)) << s;
  return out;
}

// A big-endian number as OpenSSL holds it.
std::string BnParam(EVP_PKEY* k, const char* name, int pad) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(k, name, &bn), 1);
  std::string out(static_cast<size_t>(std::max(BN_num_bytes(bn), pad)), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  BN_free(bn);
  return out;
}

bool IsBase64UrlUnpadded(const std::string& s) {
  for (char c : s) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  }
  return !s.empty();
}

KeyPairGenerator Gen(KeyPairType type, int32_t bits = 0, std::string curve = "") {
  KeyPairGenerator g;
  g.type = type;
  g.rsa_bits = bits;
  g.curve = std::move(curve);
  return g;
}

TEST(KeyPairTest, GeneratedKeysReadBackWithOpenSsl) {
  struct Case {
    std::string name;
    KeyPairGenerator g;
    int base_id;
    int bits;
    std::string kty, alg, crv;
  };
  const std::vector<Case> cases = {
      {"RSA default 2048", Gen(KeyPairType::kRsa), EVP_PKEY_RSA, 2048, "RSA", "RS256", ""},
      {"RSA 3072", Gen(KeyPairType::kRsa, 3072), EVP_PKEY_RSA, 3072, "RSA", "RS256", ""},
      {"RSA 4096", Gen(KeyPairType::kRsa, 4096), EVP_PKEY_RSA, 4096, "RSA", "RS256", ""},
      {"EC default P-256", Gen(KeyPairType::kEc), EVP_PKEY_EC, 256, "EC", "ES256", "P-256"},
      {"EC P-384", Gen(KeyPairType::kEc, 0, "P-384"), EVP_PKEY_EC, 384, "EC", "ES384", "P-384"},
      {"Ed25519", Gen(KeyPairType::kEd25519), EVP_PKEY_ED25519, 256, "OKP", "EdDSA", "Ed25519"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::string> pem = GeneratePrivateKeyPem(c.g);
    ASSERT_TRUE(pem.ok()) << pem.status();
    EXPECT_TRUE(absl::StartsWith(*pem, "-----BEGIN PRIVATE KEY-----\n")) << "PKCS#8";
    Pkey priv = ReadPrivate(*pem);
    ASSERT_NE(priv, nullptr);
    EXPECT_EQ(EVP_PKEY_get_base_id(priv.get()), c.base_id);
    EXPECT_EQ(EVP_PKEY_get_bits(priv.get()), c.bits);

    absl::StatusOr<PublicKeyParts> parts = DerivePublicKey(*pem, c.g);
    ASSERT_TRUE(parts.ok()) << parts.status();
    EXPECT_TRUE(absl::StartsWith(parts->public_pem, "-----BEGIN PUBLIC KEY-----\n"));
    EXPECT_FALSE(absl::StrContains(parts->public_pem, "PRIVATE"));
    Pkey pub = ReadPublic(parts->public_pem);
    ASSERT_NE(pub, nullptr);
    EXPECT_EQ(EVP_PKEY_eq(pub.get(), priv.get()), 1) << "the public half of the private key";

    const json& jwk = parts->jwk;
    EXPECT_EQ(jwk["kty"], c.kty);
    EXPECT_EQ(jwk["alg"], c.alg);
    EXPECT_EQ(jwk["use"], "sig");
    for (const auto& [member, value] : jwk.items()) {
      if (member == "n" || member == "e" || member == "x" || member == "y" || member == "kid") {
        EXPECT_TRUE(IsBase64UrlUnpadded(value.get<std::string>())) << member;
      }
    }
    EXPECT_FALSE(jwk.contains("d")) << "no private member";
    // kid: RFC 7638, assembled here by hand.
    std::string canonical;
    if (c.kty == "RSA") {
      canonical = absl::StrCat(R"({"e":")", jwk["e"].get<std::string>(), R"(","kty":"RSA","n":")",
                               jwk["n"].get<std::string>(), R"("})");
      EXPECT_EQ(FromBase64Url(jwk["n"]), BnParam(priv.get(), OSSL_PKEY_PARAM_RSA_N, 0));
      EXPECT_EQ(FromBase64Url(jwk["e"]), BnParam(priv.get(), OSSL_PKEY_PARAM_RSA_E, 0));
      EXPECT_EQ(FromBase64Url(jwk["n"]).size() * 8, static_cast<size_t>(c.bits));
    } else if (c.kty == "EC") {
      EXPECT_EQ(jwk["crv"], c.crv);
      const int size = c.bits / 8;
      canonical =
          absl::StrCat(R"({"crv":")", c.crv, R"(","kty":"EC","x":")", jwk["x"].get<std::string>(),
                       R"(","y":")", jwk["y"].get<std::string>(), R"("})");
      EXPECT_EQ(FromBase64Url(jwk["x"]), BnParam(priv.get(), OSSL_PKEY_PARAM_EC_PUB_X, size));
      EXPECT_EQ(FromBase64Url(jwk["y"]), BnParam(priv.get(), OSSL_PKEY_PARAM_EC_PUB_Y, size));
      EXPECT_EQ(FromBase64Url(jwk["x"]).size(), static_cast<size_t>(size)) << "padded";
    } else {
      EXPECT_EQ(jwk["crv"], "Ed25519");
      unsigned char raw[32];
      size_t len = sizeof(raw);
      ASSERT_EQ(EVP_PKEY_get_raw_public_key(priv.get(), raw, &len), 1);
      EXPECT_EQ(FromBase64Url(jwk["x"]), std::string(reinterpret_cast<char*>(raw), len));
      canonical = absl::StrCat(R"({"crv":"Ed25519","kty":"OKP","x":")", jwk["x"].get<std::string>(),
                               R"("})");
    }
    unsigned char digest[32];
    EVP_Digest(canonical.data(), canonical.size(), digest, nullptr, EVP_sha256(), nullptr);
    EXPECT_EQ(jwk["kid"], absl::WebSafeBase64Escape(
                              std::string(reinterpret_cast<char*>(digest), sizeof(digest))));
  }
}

TEST(KeyPairTest, KeysDiffer) {
  const KeyPairGenerator g = Gen(KeyPairType::kEc);
  EXPECT_NE(*GeneratePrivateKeyPem(g), *GeneratePrivateKeyPem(g));
}

TEST(KeyPairTest, GenerateValueOfAKeyPairIsItsPrivateKey) {
  KeySpec k;
  k.name = "signing.key";
  k.kind = KeySpec::Kind::kKeyPair;
  k.key_pair = Gen(KeyPairType::kEd25519);
  absl::StatusOr<std::string> v = GenerateValue(k, OpenSslRandom::Get());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_NE(ReadPrivate(*v), nullptr);
  EXPECT_EQ(PublicKeyDataKey(k), "signing.key.pub");
  EXPECT_EQ(JwksDataKey(k), "signing.key.jwks.json");
  k.key_pair.public_key_key = "public.pem";
  k.key_pair.jwks_key = "jwks.json";
  EXPECT_EQ(PublicKeyDataKey(k), "public.pem");
  EXPECT_EQ(JwksDataKey(k), "jwks.json");
}

TEST(KeyPairTest, RsaAlgorithmFollowsTheSpec) {
  KeyPairGenerator g = Gen(KeyPairType::kRsa);
  const std::string pem = *GeneratePrivateKeyPem(g);
  g.jws_algorithm = "PS384";
  EXPECT_EQ(DerivePublicKey(pem, g)->jwk["alg"], "PS384");
}

TEST(KeyPairTest, Rfc7638ExampleThumbprint) {
  // RFC 7638 section 3.1.
  const json jwk = {
      {"kty", "RSA"},
      {"n",
       "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"
       "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
       "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-"
       "bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"},
      {"e", "AQAB"},
      {"alg", "RS256"},
      {"kid", "2011-04-29"}};
  EXPECT_EQ(*JwkThumbprint(jwk), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
  EXPECT_FALSE(JwkThumbprint(json{{"kty", "oct"}, {"k", "AAAA"}}).ok());
  EXPECT_FALSE(JwkThumbprint(json{{"kty", "RSA"}, {"n", "AQAB"}}).ok()) << "e missing";
}

TEST(KeyPairTest, Rfc8037Ed25519KnownAnswer) {
  // RFC 8037 appendix A.1 (private key d) and A.3 (its thumbprint): a PKCS#8
  // wrapping of d, read back through DerivePublicKey.
  const std::string d = FromBase64Url("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
  EVP_PKEY* raw = EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(d.data()), d.size());
  ASSERT_NE(raw, nullptr);
  Pkey key(raw);
  BIO* b = BIO_new(BIO_s_mem());
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr), 1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  const std::string pem(data, static_cast<size_t>(n));
  BIO_free(b);
  absl::StatusOr<PublicKeyParts> parts = DerivePublicKey(pem, Gen(KeyPairType::kEd25519));
  ASSERT_TRUE(parts.ok()) << parts.status();
  EXPECT_EQ(parts->jwk["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
  EXPECT_EQ(parts->jwk["kid"], "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

TEST(KeyPairTest, UnreadableKeysFailWithoutQuotingThem) {
  const std::string garbage = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n";
  absl::StatusOr<PublicKeyParts> parts = DerivePublicKey(garbage, Gen(KeyPairType::kRsa));
  ASSERT_FALSE(parts.ok());
  EXPECT_FALSE(absl::StrContains(parts.status().message(), "c2VjcmV0"));
  // An encrypted key fails instead of asking for a passphrase.
  KeyPairGenerator g = Gen(KeyPairType::kEc);
  Pkey key = ReadPrivate(*GeneratePrivateKeyPem(g));
  BIO* b = BIO_new(BIO_s_mem());
  char pass[] = "passphrase";
  ASSERT_EQ(
      PEM_write_bio_PKCS8PrivateKey(b, key.get(), EVP_aes_128_cbc(), pass, 10, nullptr, nullptr),
      1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  const std::string encrypted(data, static_cast<size_t>(n));
  BIO_free(b);
  EXPECT_FALSE(DerivePublicKey(encrypted, g).ok());
}

// The derived data of each write a rotation makes (KeepPrevious).
class DeriveTest : public ::testing::Test {
 protected:
  DeriveTest() {
    KeySpec k;
    k.name = "signing.key";
    k.kind = KeySpec::Kind::kKeyPair;
    k.key_pair = Gen(KeyPairType::kEc);
    spec_.keys = {k};
    KeySpec other;
    other.name = "hmac";
    spec_.keys.push_back(other);
    spec_.strategy = RotationStrategy::kKeepPrevious;
    a_ = *GeneratePrivateKeyPem(k.key_pair);
    b_ = *GeneratePrivateKeyPem(k.key_pair);
  }
  static std::string B64(const std::string& s) { return absl::Base64Escape(s); }
  static std::string Plain(const json& v) {
    std::string out;
    EXPECT_TRUE(absl::Base64Unescape(v.get<std::string>(), &out));
    return out;
  }
  std::string Kid(const std::string& pem) {
    return DerivePublicKey(pem, spec_.keys[0].key_pair)->jwk["kid"];
  }
  std::vector<std::string> JwksKids(const json& v) {
    std::vector<std::string> out;
    const json doc = json::parse(Plain(v));
    for (const json& k : doc["keys"]) out.push_back(k["kid"]);
    return out;
  }
  // `before` with `patch` applied (nulls remove), as the API server does.
  static json Merge(json before, const json& patch) {
    for (const auto& [k, v] : patch.items()) {
      if (v.is_null()) {
        before.erase(k);
      } else {
        before[k] = v;
      }
    }
    return before;
  }

  SecretRotationSpec spec_;
  std::string a_, b_;
};

TEST_F(DeriveTest, EachWrite) {
  const KeyPairGenerator& g = spec_.keys[0].key_pair;
  const std::string pub_a = DerivePublicKey(a_, g)->public_pem;
  const std::string pub_b = DerivePublicKey(b_, g)->public_pem;

  // Create: the private key alone -> its public key and a JWKS of one key.
  json data = json::object();
  json patch = {{"signing.key", B64(a_)}, {"hmac", "aG1hYw=="}};
  json derived = *DeriveKeyPairData(spec_, data, patch);
  EXPECT_EQ(Plain(derived["signing.key.pub"]), pub_a);
  EXPECT_EQ(JwksKids(derived["signing.key.jwks.json"]), std::vector<std::string>{Kid(a_)});
  EXPECT_FALSE(derived.contains("signing.key.pub_previous"));
  data = Merge(Merge(data, patch), derived);

  // Pending: a pending key only -> nothing derived (the JWKS does not change yet).
  patch = {{PendingKey("signing.key"), B64(b_)}};
  EXPECT_EQ(*DeriveKeyPairData(spec_, data, patch), json::object());
  data = Merge(data, patch);

  // Swap (KeepPrevious): current and previous keys both published.
  patch = {{"signing.key", B64(b_)},
           {"signing.key_previous", B64(a_)},
           {RollbackKey("signing.key"), B64(a_)},
           {PendingKey("signing.key"), nullptr}};
  derived = *DeriveKeyPairData(spec_, data, patch);
  EXPECT_EQ(Plain(derived["signing.key.pub"]), pub_b);
  EXPECT_EQ(Plain(derived["signing.key.pub_previous"]), pub_a);
  EXPECT_EQ(JwksKids(derived["signing.key.jwks.json"]),
            (std::vector<std::string>{Kid(b_), Kid(a_)}))
      << "current first, then previous";
  data = Merge(Merge(data, patch), derived);

  // Complete: rollback copies dropped -> nothing derived.
  patch = {{RollbackKey("signing.key"), nullptr}};
  EXPECT_EQ(*DeriveKeyPairData(spec_, data, patch), json::object());
  data = Merge(data, patch);

  // Grace over: previous removed -> the JWKS holds the current key only.
  patch = {{"signing.key_previous", nullptr}};
  derived = *DeriveKeyPairData(spec_, data, patch);
  EXPECT_TRUE(derived["signing.key.pub_previous"].is_null());
  EXPECT_FALSE(derived.contains("signing.key.pub")) << "unchanged, not rewritten";
  EXPECT_EQ(JwksKids(derived["signing.key.jwks.json"]), std::vector<std::string>{Kid(b_)});
  data = Merge(Merge(data, patch), derived);

  // A derived key deleted by hand comes back on the next write.
  data.erase("signing.key.jwks.json");
  derived = *DeriveKeyPairData(spec_, data, json::object());
  EXPECT_EQ(JwksKids(derived["signing.key.jwks.json"]), std::vector<std::string>{Kid(b_)});
  EXPECT_EQ(derived.size(), 1u);

  // A private key replaced by something unreadable: an error naming the data key only.
  absl::StatusOr<json> bad =
      DeriveKeyPairData(spec_, data, json{{"signing.key", B64("not-a-key-at-all-0123456789")}});
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "signing.key")) << bad.status();
  EXPECT_FALSE(absl::StrContains(bad.status().message(), "not-a-key"));
}

TEST_F(DeriveTest, RestoreRepublishesTheRestoredKeyOnly) {
  const KeyPairGenerator& g = spec_.keys[0].key_pair;
  json data = {{"signing.key", B64(b_)},
               {"signing.key_previous", B64(a_)},
               {RollbackKey("signing.key"), B64(a_)}};
  data = Merge(data, *DeriveKeyPairData(spec_, json::object(), data));
  const json patch = {{"signing.key", B64(a_)},
                      {"signing.key_previous", nullptr},
                      {RollbackKey("signing.key"), nullptr}};
  const json derived = *DeriveKeyPairData(spec_, data, patch);
  EXPECT_EQ(Plain(derived["signing.key.pub"]), DerivePublicKey(a_, g)->public_pem);
  EXPECT_TRUE(derived["signing.key.pub_previous"].is_null());
  EXPECT_EQ(JwksKids(derived["signing.key.jwks.json"]), std::vector<std::string>{Kid(a_)});
}

TEST_F(DeriveTest, IdleWithAMissingDerivedKeyIsAFillWithoutNewValues) {
  SecretRotation sr;
  sr.name = "jwt";
  sr.spec = spec_;
  RotationInput in;
  in.rotation = &sr;
  in.now = absl::FromUnixSeconds(1'800'000'000);
  in.secret.exists = true;
  in.secret.annotations = {{kAnnState, "Idle"},
                           {kAnnVersion, "1"},
                           {kAnnLastAttempt, FormatRfc3339(in.now - absl::Hours(1))}};
  in.secret.data_keys = {"signing.key", "signing.key.pub", "hmac"};
  RotationPlan plan = PlanRotation(in);
  EXPECT_EQ(plan.action, Action::kFillMissing);
  EXPECT_TRUE(plan.change.generate.empty()) << "the private key is kept";
  in.secret.data_keys.insert("signing.key.jwks.json");
  EXPECT_EQ(PlanRotation(in).action, Action::kNone);
}

}  // namespace
}  // namespace capstan::secrets
