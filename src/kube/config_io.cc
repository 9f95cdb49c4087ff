#include "config_io.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace capstan::kube::internal {
namespace {

absl::Status ErrnoError(int err, const std::string& path) {
  return absl::Status(absl::ErrnoToStatusCode(err), absl::StrCat(path, ": ", ErrnoText(err)));
}

}  // namespace

std::string ErrnoText(int err) {
  char buf[256];
  // The GNU strerror_r returns the message, not necessarily in buf.
  return std::string(strerror_r(err, buf, sizeof(buf)));
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoError(errno, path);

  std::string content;
  absl::Status status;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    status = ErrnoError(errno, path);
  } else if (S_ISDIR(st.st_mode)) {
    status = absl::FailedPreconditionError(absl::StrCat(path, ": is a directory"));
  } else {
    char buf[64 << 10];
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status = ErrnoError(errno, path);
        break;
      }
      if (n == 0) break;
      content.append(buf, static_cast<size_t>(n));
      if (content.size() > max_bytes) {
        status = absl::FailedPreconditionError(
            absl::StrCat(path, ": larger than ", max_bytes, " bytes"));
        break;
      }
    }
  }
  ::close(fd);
  if (!status.ok()) return status;
  return content;
}

absl::StatusOr<FileIdentity> StatFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoError(errno, path);
  FileIdentity id;
  id.dev = st.st_dev;
  id.ino = st.st_ino;
  id.size = st.st_size;
  id.mtime = st.st_mtim;
  return id;
}

}  // namespace capstan::kube::internal
