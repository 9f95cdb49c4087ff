#include "fault_proxy.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "capstan/common/status_macros.h"

extern char** environ;

namespace capstan::kube::itest {
namespace {

std::string SourceDir() {
  const char* env = std::getenv("CAPSTAN_SOURCE_DIR");
  if (env != nullptr && *env != '\0') return env;
  return CAPSTAN_SOURCE_DIR;
}

// Reads the proxy's first stdout line ("faultproxy listening on 127.0.0.1:<port>").
absl::StatusOr<int> ReadPort(int fd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string line;
  while (line.find('\n') == std::string::npos) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat("faultproxy did not report its port within ",
                                                      absl::FormatDuration(timeout)));
    }
    pollfd p{fd, POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[256];
    const ssize_t got = read(fd, buf, sizeof(buf));
    if (got <= 0) return absl::UnavailableError("faultproxy exited before it was listening");
    line.append(buf, static_cast<size_t>(got));
  }
  line.resize(line.find('\n'));
  const size_t colon = line.rfind(':');
  int port = 0;
  if (!absl::StartsWith(line, "faultproxy listening on") || colon == std::string::npos ||
      !absl::SimpleAtoi(line.substr(colon + 1), &port)) {
    return absl::InternalError(absl::StrCat("faultproxy said: ", line));
  }
  return port;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FaultProxy>> FaultProxy::Start(
    const std::string& upstream_kubeconfig, const std::string& proxy_kubeconfig) {
  const std::string script = absl::StrCat(SourceDir(), "/tests/tools/faultproxy.py");
  std::vector<std::string> args = {"python3", script, "--kubeconfig",       upstream_kubeconfig,
                                   "--port",  "0",    "--write-kubeconfig", proxy_kubeconfig};
  if (std::getenv("CAPSTAN_FAULTPROXY_VERBOSE") != nullptr) args.push_back("--verbose");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, "python3", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    return absl::InternalError(absl::StrCat("starting python3 ", script, ": ", strerror(rc)));
  }
  absl::StatusOr<int> port = ReadPort(out[0], absl::Seconds(20));
  // The proxy prints nothing else to stdout; keep the pipe from filling by closing
  // our end (a later write would fail in the proxy, which never writes again).
  close(out[0]);
  if (!port.ok()) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return port.status();
  }
  RestConfig control;
  control.server = absl::StrCat("http://127.0.0.1:", *port);
  control.source = "faultproxy control";
  control.timeout = absl::Seconds(10);
  absl::StatusOr<std::unique_ptr<Transport>> transport = NewCppRestTransport(control);
  if (!transport.ok()) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return transport.status();
  }
  return std::unique_ptr<FaultProxy>(
      new FaultProxy(pid, *port, proxy_kubeconfig, std::move(transport).value()));
}

FaultProxy::FaultProxy(pid_t pid, int port, std::string kubeconfig,
                       std::unique_ptr<Transport> control)
    : pid_(pid), port_(port), kubeconfig_(std::move(kubeconfig)), control_(std::move(control)) {}

FaultProxy::~FaultProxy() {
  control_.reset();
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    absl::SleepFor(absl::Milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

absl::StatusOr<Object> FaultProxy::Control(const std::string& method, const std::string& path,
                                           const std::string& body) {
  HttpRequest req;
  req.method = method;
  req.path = path;
  req.body = body;
  req.content_type = "application/json";
  ASSIGN_OR_RETURN(HttpResponse resp, control_->Do(req));
  if (resp.status != 200) {
    return absl::InternalError(
        absl::StrCat("faultproxy ", method, " ", path, ": HTTP ", resp.status, " ", resp.body));
  }
  Object out = Object::parse(resp.body, nullptr, /*allow_exceptions=*/false);
  if (out.is_discarded()) return absl::InternalError("faultproxy answered with invalid JSON");
  return out;
}

absl::Status FaultProxy::AddRule(const Object& rule) {
  return Control("POST", "/__faults/rules", rule.dump()).status();
}

absl::Status FaultProxy::Reset() { return Control("POST", "/__faults/reset", "").status(); }

absl::StatusOr<int> FaultProxy::CutOpenResponses() {
  ASSIGN_OR_RETURN(Object out, Control("POST", "/__faults/cut", ""));
  return out.value("cut", 0);
}

absl::StatusOr<Object> FaultProxy::Requests() {
  ASSIGN_OR_RETURN(Object stats, Control("GET", "/__faults/stats", ""));
  return stats["requests"];
}

absl::StatusOr<int> FaultProxy::Count(const std::string& method, const std::string& target_part) {
  ASSIGN_OR_RETURN(Object requests, Requests());
  int n = 0;
  for (const Object& r : requests) {
    if (!method.empty() && r.value("method", "") != method) continue;
    if (absl::StrContains(r.value("target", ""), target_part)) ++n;
  }
  return n;
}

}  // namespace capstan::kube::itest
