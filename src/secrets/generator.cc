#include "capstan/secrets/generator.h"

#include <openssl/err.h>
#include <openssl/rand.h>

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "capstan/common/status_macros.h"
#include "capstan/secrets/keypair.h"

namespace capstan::secrets {
namespace {

std::string Filter(const std::string& chars, const std::string& exclude) {
  std::string out;
  for (char c : chars) {
    if (exclude.find(c) == std::string::npos) out.push_back(c);
  }
  return out;
}

}  // namespace

absl::Status OpenSslRandom::Fill(uint8_t* out, size_t n) {
  if (n == 0) return absl::OkStatus();
  if (RAND_bytes(out, static_cast<int>(n)) != 1) {
    // The OpenSSL error names the failing component, never the output.
    return absl::UnavailableError(
        absl::StrCat("RAND_bytes failed: OpenSSL error ", ERR_get_error()));
  }
  return absl::OkStatus();
}

OpenSslRandom& OpenSslRandom::Get() {
  static OpenSslRandom* rng = new OpenSslRandom();
  return *rng;
}

std::string PasswordAlphabet(const PasswordGenerator& g) {
  std::string all;
  for (CharClass c :
       {CharClass::kLower, CharClass::kUpper, CharClass::kDigit, CharClass::kSymbol}) {
    if (std::find(g.classes.begin(), g.classes.end(), c) != g.classes.end()) {
      all += ClassCharacters(c);
    }
  }
  return Filter(all, g.exclude);
}

std::string EncodeBytes(const std::string& bytes, ValueEncoding encoding) {
  switch (encoding) {
    case ValueEncoding::kBase64:
      return absl::Base64Escape(bytes);
    case ValueEncoding::kBase64Url:
      return absl::WebSafeBase64Escape(bytes);
    case ValueEncoding::kHex:
      return absl::BytesToHexString(bytes);
  }
  return "";
}

absl::StatusOr<uint32_t> UniformBelow(RandomSource& rng, uint32_t n) {
  if (n == 0 || n > 256) return absl::InvalidArgumentError("UniformBelow: n must be 1..256");
  // Accept bytes below the largest multiple of n that fits in 256: e.g. n = 62
  // accepts 0..247 (4 * 62) and redraws 248..255, so each residue has exactly
  // 4 preimages. Expected draws < 2 for any n.
  const uint32_t limit = 256 - (256 % n);
  uint8_t buf[32];
  for (int rounds = 0; rounds < 64; ++rounds) {
    RETURN_IF_ERROR(rng.Fill(buf, sizeof(buf)));
    for (uint8_t b : buf) {
      if (b < limit) return b % n;
    }
  }
  return absl::InternalError("random source keeps returning rejected bytes");
}

absl::StatusOr<std::string> GenerateValue(const KeySpec& key, RandomSource& rng) {
  switch (key.kind) {
    case KeySpec::Kind::kRandomBytes: {
      std::string bytes(static_cast<size_t>(key.random_bytes.length), '\0');
      RETURN_IF_ERROR(rng.Fill(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()));
      std::string out = EncodeBytes(bytes, key.random_bytes.encoding);
      std::fill(bytes.begin(), bytes.end(), '\0');
      return out;
    }
    case KeySpec::Kind::kUuid: {
      uint8_t b[16];
      RETURN_IF_ERROR(rng.Fill(b, sizeof(b)));
      b[6] = static_cast<uint8_t>((b[6] & 0x0F) | 0x40);  // version 4
      b[8] = static_cast<uint8_t>((b[8] & 0x3F) | 0x80);  // RFC 4122 variant
      const std::string hex =
          absl::BytesToHexString(std::string(reinterpret_cast<const char*>(b), sizeof(b)));
      return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-",
                          hex.substr(16, 4), "-", hex.substr(20, 12));
    }
    case KeySpec::Kind::kKeyPair:
      // OpenSSL's DRBG, not `rng`: a prime search cannot be fed from outside.
      return GeneratePrivateKeyPem(key.key_pair);
    case KeySpec::Kind::kPassword: {
      const PasswordGenerator& g = key.password;
      const std::string alphabet = PasswordAlphabet(g);
      if (alphabet.empty() || alphabet.size() > 256 || g.length < 1 ||
          static_cast<size_t>(g.length) < g.classes.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("key ", key.name, ": password generator cannot satisfy its classes"));
      }
      std::string out;
      out.reserve(static_cast<size_t>(g.length));
      // One of each required class first, so every class is present...
      for (CharClass c : g.classes) {
        const std::string chars = Filter(ClassCharacters(c), g.exclude);
        if (chars.empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("key ", key.name, ": exclude removes a whole character class"));
        }
        ASSIGN_OR_RETURN(uint32_t i, UniformBelow(rng, static_cast<uint32_t>(chars.size())));
        out.push_back(chars[i]);
      }
      // ...the rest from the whole alphabet...
      while (out.size() < static_cast<size_t>(g.length)) {
        ASSIGN_OR_RETURN(uint32_t i, UniformBelow(rng, static_cast<uint32_t>(alphabet.size())));
        out.push_back(alphabet[i]);
      }
      // ...then a Fisher-Yates shuffle so the forced characters sit anywhere.
      // Lengths are at most 1024 here; positions past 256 use two draws.
      for (size_t i = out.size() - 1; i > 0; --i) {
        size_t j;
        if (i + 1 <= 256) {
          ASSIGN_OR_RETURN(uint32_t r, UniformBelow(rng, static_cast<uint32_t>(i + 1)));
          j = r;
        } else {
          // Uniform over [0, i] from 16 random bits with rejection.
          const uint32_t n = static_cast<uint32_t>(i + 1);
          const uint32_t limit = 65536 - (65536 % n);
          uint32_t v;
          do {
            uint8_t b[2];
            RETURN_IF_ERROR(rng.Fill(b, 2));
            v = (static_cast<uint32_t>(b[0]) << 8) | b[1];
          } while (v >= limit);
          j = v % n;
        }
        std::swap(out[i], out[j]);
      }
      return out;
    }
  }
  return absl::InternalError("unknown generator");
}

}  // namespace capstan::secrets
