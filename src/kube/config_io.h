#pragma once

// File helpers for the client configuration (kubeconfig, token files, service-account
// files). Internal to capstan_kube.

#include <sys/types.h>

#include <cstddef>
#include <ctime>
#include <string>

#include "absl/status/statusor.h"

namespace capstan::kube::internal {

// Kubeconfigs with many clusters and inline certificates stay far below this.
inline constexpr size_t kMaxConfigFileBytes = 16 << 20;

// strerror, thread-safe: "No such file or directory".
std::string ErrnoText(int err);

// The whole content of a regular file. Errors read "<path>: <reason>" with a code
// from errno (NotFound, PermissionDenied, ...); never any of the content.
absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             size_t max_bytes = kMaxConfigFileBytes);

// What changes when a file is rewritten or its symlink swapped (the kubelet's
// atomic writer replaces the `..data` link of a projected volume).
struct FileIdentity {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};

  bool operator==(const FileIdentity& o) const {
    return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

// stat(2), following symlinks. Errors as for ReadFileToString.
absl::StatusOr<FileIdentity> StatFile(const std::string& path);

}  // namespace capstan::kube::internal
