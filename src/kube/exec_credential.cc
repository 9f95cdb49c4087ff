#include "capstan/kube/exec_credential.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "config_io.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

extern char** environ;

namespace capstan::kube {
namespace {

// A credential with a certificate chain fits easily; anything bigger is a broken plugin.
constexpr size_t kMaxStdoutBytes = 4 << 20;
// Only the tail of stderr is kept: the last lines usually say what went wrong.
constexpr size_t kMaxStderrBytes = 16 << 10;
constexpr size_t kMaxStderrInMessage = 1024;
constexpr absl::Duration kMaxRefreshMargin = absl::Seconds(30);
constexpr char kExecInfoEnv[] = "KUBERNETES_EXEC_INFO";

// A monotonic reading, for the run deadline: wall-clock steps must not kill a plugin
// early or let it run forever.
absl::Duration MonotonicNow() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return absl::DurationFromTimespec(ts);
}

// Closes a file descriptor when it goes out of scope.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Close(); }
  int get() const { return fd_; }
  void Reset(int fd) {
    Close();
    fd_ = fd;
  }
  void Close() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
};

absl::Status PipeCloexec(Fd* read_end, Fd* write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::ErrnoToStatus(errno, "pipe");
  }
  read_end->Reset(fds[0]);
  write_end->Reset(fds[1]);
  return absl::OkStatus();
}

// "line one; line two", trimmed, at most kMaxStderrInMessage characters (the tail).
std::string OneLine(absl::string_view text) {
  std::vector<absl::string_view> lines;
  for (absl::string_view line : absl::StrSplit(text, absl::ByAnyChar("\r\n"))) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) lines.push_back(line);
  }
  std::string joined = absl::StrJoin(lines, "; ");
  if (joined.size() > kMaxStderrInMessage) {
    joined = absl::StrCat("...", joined.substr(joined.size() - kMaxStderrInMessage));
  }
  return joined;
}

std::string StderrSuffix(absl::string_view stderr_text) {
  std::string line = OneLine(stderr_text);
  return line.empty() ? std::string(" (no stderr)") : absl::StrCat("; stderr: ", line);
}

struct RunOutput {
  std::string out;  // the credential: never logged, never in a message
  std::string err;
};

// Runs the plugin: no shell, stdin /dev/null, stdout and stderr on pipes, its own
// process group (so a timeout also kills whatever it started), a deadline on the
// monotonic clock.
absl::StatusOr<RunOutput> RunPlugin(const ExecPluginConfig& config, absl::string_view label) {
  // Environment: ours, overridden by the kubeconfig's env and KUBERNETES_EXEC_INFO.
  // A later entry for the same name wins, as with kubectl.
  std::vector<std::pair<std::string, std::string>> overrides;
  auto set = [&overrides](const std::string& name, const std::string& value) {
    auto it = std::find_if(overrides.begin(), overrides.end(),
                           [&](const auto& kv) { return kv.first == name; });
    if (it != overrides.end()) {
      it->second = value;
    } else {
      overrides.emplace_back(name, value);
    }
  };
  for (const auto& [name, value] : config.env) set(name, value);
  set(kExecInfoEnv,
      config.exec_info.empty() ? ExecInfoJson(config.api_version, nullptr) : config.exec_info);
  std::vector<std::string> env_strings;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view entry(*e);
    absl::string_view name = entry.substr(0, entry.find('='));
    bool overridden = std::any_of(overrides.begin(), overrides.end(),
                                  [&](const auto& kv) { return kv.first == name; });
    if (!overridden) env_strings.emplace_back(entry);
  }
  for (const auto& [name, value] : overrides) {
    env_strings.push_back(absl::StrCat(name, "=", value));
  }
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  std::vector<std::string> argv_strings;
  argv_strings.push_back(config.command);
  argv_strings.insert(argv_strings.end(), config.args.begin(), config.args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  Fd out_r, out_w, err_r, err_w;
  if (absl::Status s = PipeCloexec(&out_r, &out_w); !s.ok()) return s;
  if (absl::Status s = PipeCloexec(&err_r, &err_w); !s.ok()) return s;

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_w.get(), STDERR_FILENO);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t mask;
  sigemptyset(&mask);
  posix_spawnattr_setsigmask(&attr, &mask);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM}) {
    sigaddset(&defaults, sig);
  }
  posix_spawnattr_setsigdefault(&attr, &defaults);

  pid_t pid = -1;
  // posix_spawnp searches this process's PATH, like kubectl (Go's exec.LookPath).
  int spawn_error =
      posix_spawnp(&pid, config.command.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  out_w.Close();
  err_w.Close();
  if (spawn_error != 0) {
    std::string hint = OneLine(config.install_hint);
    absl::StatusCode code = (spawn_error == ENOENT || spawn_error == EACCES ||
                             spawn_error == ENOEXEC || spawn_error == ENOTDIR)
                                ? absl::StatusCode::kFailedPrecondition
                                : absl::StatusCode::kUnavailable;
    std::string what = spawn_error == ENOENT ? "executable not found" : "cannot be started";
    return absl::Status(code,
                        absl::StrCat(label, ": ", what, " (", internal::ErrnoText(spawn_error), ")",
                                     hint.empty() ? "" : absl::StrCat("; ", hint)));
  }

  const absl::Duration deadline = MonotonicNow() + config.timeout;
  RunOutput output;
  bool timed_out = false;
  bool too_large = false;
  std::vector<pollfd> fds = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
  char buf[8192];
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    absl::Duration left = deadline - MonotonicNow();
    if (left <= absl::ZeroDuration()) {
      timed_out = true;
      break;
    }
    int ms = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1000));
    int n = ::poll(fds.data(), fds.size(), ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t got = ::read(fds[i].fd, buf, sizeof(buf));
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) {
        fds[i].fd = -1;  // EOF (or a read error): the Fd closes at the end
        continue;
      }
      std::string& sink = i == 0 ? output.out : output.err;
      sink.append(buf, static_cast<size_t>(got));
      if (i == 1 && sink.size() > kMaxStderrBytes) {
        sink.erase(0, sink.size() - kMaxStderrBytes);
      }
      if (i == 0 && sink.size() > kMaxStdoutBytes) too_large = true;
    }
    if (too_large) break;
  }

  // Reap. A plugin that closed its pipes may still be running: keep to the deadline.
  int wait_status = 0;
  bool reaped = false;
  bool lost = false;  // reaped by someone else (SIGCHLD ignored): nothing to kill or wait for
  absl::Duration pause = absl::Milliseconds(1);
  while (!timed_out && !too_large) {
    pid_t r = ::waitpid(pid, &wait_status, WNOHANG);
    if (r == pid) {
      reaped = true;
      break;
    }
    if (r < 0 && errno != EINTR) {
      lost = true;
      break;
    }
    if (MonotonicNow() >= deadline) {
      timed_out = true;
      break;
    }
    absl::SleepFor(pause);
    pause = std::min(pause * 2, absl::Milliseconds(50));
  }
  if (!reaped && !lost) {
    ::kill(-pid, SIGKILL);  // the whole process group
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
    }
  }
  if (!output.err.empty()) {
    // Plugins print warnings and progress there; it is meant for people, not a secret.
    spdlog::debug("{} stderr: {}", std::string(label), OneLine(output.err));
  }

  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(label, ": no answer within ",
                                                    absl::FormatDuration(config.timeout),
                                                    ", killed", StderrSuffix(output.err)));
  }
  if (too_large) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": printed more than ", kMaxStdoutBytes, " bytes, killed"));
  }
  if (reaped && WIFSIGNALED(wait_status)) {
    return absl::UnavailableError(absl::StrCat(label, ": killed by signal ", WTERMSIG(wait_status),
                                               StderrSuffix(output.err)));
  }
  if (reaped && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) != 0) {
    return absl::UnavailableError(absl::StrCat(label, ": exited with status ",
                                               WEXITSTATUS(wait_status), StderrSuffix(output.err)));
  }
  return output;
}

// Field accessors on the plugin's JSON: a message names the field, never its value.
absl::Status OptionalString(const nlohmann::json& object, const char* key, absl::string_view path,
                            std::string* out) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(path, key, ": not a string"));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ExecCredential> ParseExecCredential(absl::string_view json,
                                                   absl::string_view api_version) {
  // No exceptions, and no parser message: it would quote the (secret) input.
  nlohmann::json doc = nlohmann::json::parse(json.begin(), json.end(), nullptr,
                                             /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("output is not a JSON ExecCredential (", json.size(), " bytes)"));
  }
  if (!doc.is_object()) {
    return absl::InvalidArgumentError("output is not a JSON object");
  }
  std::string got_version, kind;
  if (absl::Status s = OptionalString(doc, "apiVersion", "", &got_version); !s.ok()) return s;
  if (absl::Status s = OptionalString(doc, "kind", "", &kind); !s.ok()) return s;
  if (got_version != api_version) {
    if (got_version.size() > 64) got_version = got_version.substr(0, 64) + "...";
    return absl::InvalidArgumentError(absl::StrCat(
        "apiVersion is \"", got_version, "\", but the kubeconfig asks for \"", api_version, "\""));
  }
  if (kind != "ExecCredential") {
    return absl::InvalidArgumentError("kind: not ExecCredential");
  }
  auto status = doc.find("status");
  if (status == doc.end() || status->is_null()) {
    return absl::InvalidArgumentError("status: missing");
  }
  if (!status->is_object()) {
    return absl::InvalidArgumentError("status: not an object");
  }
  ExecCredential cred;
  std::string expiry;
  if (absl::Status s = OptionalString(*status, "token", "status.", &cred.token); !s.ok()) {
    return s;
  }
  if (absl::Status s =
          OptionalString(*status, "clientCertificateData", "status.", &cred.client_certificate_pem);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = OptionalString(*status, "clientKeyData", "status.", &cred.client_key_pem);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = OptionalString(*status, "expirationTimestamp", "status.", &expiry);
      !s.ok()) {
    return s;
  }
  if (cred.client_certificate_pem.empty() != cred.client_key_pem.empty()) {
    return absl::InvalidArgumentError(
        cred.client_key_pem.empty()
            ? "status.clientCertificateData is set without status.clientKeyData"
            : "status.clientKeyData is set without status.clientCertificateData");
  }
  if (cred.token.empty() && cred.client_certificate_pem.empty()) {
    return absl::InvalidArgumentError(
        "status: neither token nor clientCertificateData/clientKeyData is set");
  }
  if (!expiry.empty()) {
    absl::Time t;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, expiry, &t, &err)) {
      return absl::InvalidArgumentError(
          absl::StrCat("status.expirationTimestamp: not an RFC 3339 time (", err, ")"));
    }
    cred.expiry = t;
  }
  return cred;
}

absl::Time ExecCredentialRefreshTime(absl::Time fetched_at, absl::Time expiry) {
  absl::Duration lifetime = expiry - fetched_at;
  if (lifetime <= absl::ZeroDuration()) return expiry;
  return expiry - std::min(kMaxRefreshMargin, lifetime / 10);
}

std::string ExecInfoJson(absl::string_view api_version, const ExecClusterInfo* cluster) {
  nlohmann::json spec = {{"interactive", false}};
  if (cluster != nullptr) {
    // Field names and omissions as in client.authentication.k8s.io Cluster.
    nlohmann::json c = {{"server", cluster->server}};
    if (!cluster->tls_server_name.empty()) c["tls-server-name"] = cluster->tls_server_name;
    if (cluster->insecure_skip_tls_verify) c["insecure-skip-tls-verify"] = true;
    if (!cluster->ca_pem.empty()) {
      c["certificate-authority-data"] = absl::Base64Escape(cluster->ca_pem);
    }
    if (!cluster->config_json.empty()) {
      nlohmann::json config = nlohmann::json::parse(cluster->config_json, nullptr, false);
      if (!config.is_discarded()) c["config"] = std::move(config);
    }
    spec["cluster"] = std::move(c);
  }
  nlohmann::json doc = {{"apiVersion", std::string(api_version)},
                        {"kind", "ExecCredential"},
                        {"spec", std::move(spec)}};
  // `replace`: invalid UTF-8 (in a server name, say) must not throw.
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ExecTokenSource::ExecTokenSource(ExecPluginConfig config, const Clock& clock)
    : config_(std::move(config)), clock_(clock) {}

ExecTokenSource::~ExecTokenSource() {
  std::thread refresher;
  {
    absl::MutexLock lock(&mu_);
    refresher = std::move(refresher_);
  }
  if (refresher.joinable()) refresher.join();
}

bool ExecTokenSource::FreshLocked(absl::Time now) const {
  return cached_.has_value() && now < cached_->refresh_at;
}

absl::StatusOr<ExecCredential> ExecTokenSource::Credential() {
  uint64_t seen_runs;
  std::optional<ExecCredential> still_valid;
  std::thread finished;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_.Now();
    if (FreshLocked(now)) return cached_->credential;
    if (cached_.has_value() && cached_->credential.expiry.has_value() &&
        now < *cached_->credential.expiry) {
      // Due for a refresh, still valid: answer now, refresh in the background.
      if (!refreshing_) {
        refreshing_ = true;
        finished = std::move(refresher_);  // a previous refresh, done: joined below
        refresher_ = std::thread([this] {
          {
            absl::MutexLock run_lock(&run_mu_);
            (void)RunAndStore();
          }
          absl::MutexLock lock(&mu_);
          refreshing_ = false;
        });
      }
      still_valid = cached_->credential;
    }
    seen_runs = runs_;
  }
  if (still_valid.has_value()) {
    if (finished.joinable()) finished.join();
    return *std::move(still_valid);
  }
  absl::MutexLock run_lock(&run_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (runs_ != seen_runs) {
      // Another caller ran the plugin while we waited: share its answer.
      if (FreshLocked(clock_.Now())) return cached_->credential;
      if (!last_error_.ok()) return last_error_;
    }
  }
  return RunAndStore();
}

absl::StatusOr<ExecCredential> ExecTokenSource::RunAndStore() {
  const std::string label = absl::StrCat("exec plugin \"", config_.command, "\"");
  absl::StatusOr<ExecCredential> cred;
  absl::StatusOr<RunOutput> run = RunPlugin(config_, label);
  if (!run.ok()) {
    cred = run.status();
  } else {
    cred = ParseExecCredential(run->out, config_.api_version);
    if (!cred.ok()) {
      cred = absl::Status(cred.status().code(), absl::StrCat(label, ": ", cred.status().message()));
    }
  }
  const absl::Time now = clock_.Now();

  absl::MutexLock lock(&mu_);
  ++runs_;
  if (!cred.ok()) {
    last_error_ = cred.status();
    // Refreshing ahead of expiry failed; the old credential still works until it expires
    // (Invalidate() drops it when the server says otherwise).
    if (cached_.has_value() && cached_->credential.expiry.has_value() &&
        now < *cached_->credential.expiry) {
      spdlog::warn("{}; keeping the current credential until it expires at {}",
                   std::string(cred.status().message()),
                   absl::FormatTime(*cached_->credential.expiry));
      return cached_->credential;
    }
    return cred.status();
  }
  last_error_ = absl::OkStatus();
  Cached fresh{*cred, absl::InfiniteFuture()};
  if (cred->expiry.has_value()) {
    fresh.refresh_at = ExecCredentialRefreshTime(now, *cred->expiry);
  }
  spdlog::debug("{}: new credential, expires {}", label,
                cred->expiry.has_value() ? absl::FormatTime(*cred->expiry) : "never");
  cached_ = std::move(fresh);
  return cached_->credential;
}

absl::StatusOr<std::string> ExecTokenSource::Token() {
  absl::StatusOr<ExecCredential> cred = Credential();
  if (!cred.ok()) return cred.status();
  if (cred->token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "exec plugin \"", config_.command, "\" returned no token (only a client certificate)"));
  }
  return std::move(cred->token);
}

void ExecTokenSource::Invalidate() {
  absl::MutexLock lock(&mu_);
  cached_.reset();
}

}  // namespace capstan::kube
