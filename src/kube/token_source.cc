// Static and file-backed bearer tokens (rest_config.h). Exec plugins live in
// exec_credential.cc.

#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "capstan/kube/rest_config.h"
#include "config_io.h"
#include "spdlog/spdlog.h"

namespace capstan::kube {
namespace {

// Service-account tokens are about 1 KiB; anything near this is not a token.
constexpr size_t kMaxTokenFileBytes = 1 << 20;

class StaticTokenSource final : public TokenSource {
 public:
  explicit StaticTokenSource(std::string token) : token_(std::move(token)) {}
  absl::StatusOr<std::string> Token() override { return token_; }

 private:
  const std::string token_;
};

// Thread-safe. The stat and the read happen outside mu_; two threads may both
// re-read at a rotation, which is harmless.
class FileTokenSource final : public TokenSource {
 public:
  FileTokenSource(std::string path, const Clock& clock, FileTokenSourceOptions options)
      : path_(std::move(path)), clock_(clock), options_(options) {}

  absl::StatusOr<std::string> Token() override {
    const absl::Time now = clock_.Now();
    bool must_read;
    std::optional<internal::FileIdentity> known;
    absl::Time read_at;
    {
      absl::MutexLock lock(&mu_);
      if (token_.has_value() && !invalidated_ && now < next_stat_) return *token_;
      must_read = !token_.has_value() || invalidated_;
      known = identity_;
      read_at = read_at_;
    }

    absl::StatusOr<internal::FileIdentity> id = internal::StatFile(path_);
    if (id.ok() && !must_read && known == *id && now - read_at < options_.max_age) {
      absl::MutexLock lock(&mu_);
      if (token_.has_value() && !invalidated_) {
        next_stat_ = now + options_.stat_interval;
        return *token_;
      }
    }

    absl::StatusOr<std::string> token = Read(id);
    absl::MutexLock lock(&mu_);
    if (!token.ok()) {
      if (token_.has_value() && !invalidated_) {
        // The server still accepts the old token as far as we know; keep it and try
        // again at the next stat.
        spdlog::warn("{}; keeping the token read at {}", std::string(token.status().message()),
                     absl::FormatTime(read_at_));
        next_stat_ = now + options_.stat_interval;
        return *token_;
      }
      return token.status();
    }
    if (token_.has_value() && *token_ != *token) {
      spdlog::info("token file {} rotated", path_);
    }
    token_ = *token;
    identity_ = *id;
    read_at_ = now;
    next_stat_ = now + options_.stat_interval;
    invalidated_ = false;
    return std::move(*token);
  }

  void Invalidate() override {
    absl::MutexLock lock(&mu_);
    invalidated_ = true;
  }

 private:
  absl::StatusOr<std::string> Read(const absl::StatusOr<internal::FileIdentity>& id) const {
    if (!id.ok()) {
      return absl::Status(id.status().code(), absl::StrCat("token file ", id.status().message()));
    }
    absl::StatusOr<std::string> content = internal::ReadFileToString(path_, kMaxTokenFileBytes);
    if (!content.ok()) {
      return absl::Status(content.status().code(),
                          absl::StrCat("token file ", content.status().message()));
    }
    absl::string_view token = absl::StripAsciiWhitespace(*content);
    if (token.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("token file ", path_, ": empty"));
    }
    return std::string(token);
  }

  const std::string path_;
  const Clock& clock_;
  const FileTokenSourceOptions options_;

  mutable absl::Mutex mu_;
  std::optional<std::string> token_ ABSL_GUARDED_BY(mu_);
  std::optional<internal::FileIdentity> identity_ ABSL_GUARDED_BY(mu_);
  absl::Time read_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time next_stat_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool invalidated_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

std::shared_ptr<TokenSource> NewStaticTokenSource(std::string token) {
  return std::make_shared<StaticTokenSource>(std::move(token));
}

std::shared_ptr<TokenSource> NewFileTokenSource(std::string path, const Clock& clock,
                                                FileTokenSourceOptions options) {
  return std::make_shared<FileTokenSource>(std::move(path), clock, options);
}

}  // namespace capstan::kube
