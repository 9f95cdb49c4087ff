#include "capstan/server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>
#include <set>
#include <utility>

// cpprestsdk's `U(x)` macro breaks fmt and gtest templates that name a parameter U.
#ifndef _TURN_OFF_PLATFORM_STRING
#define _TURN_OFF_PLATFORM_STRING
#endif
#include <cpprest/http_listener.h>
#include <cpprest/http_msg.h>
#include <cpprest/uri_builder.h>
#include <pplx/threadpool.h>

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include "absl/base/attributes.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "capstan/common/metrics.h"
#include "prometheus/text_serializer.h"
#include "spdlog/spdlog.h"

namespace capstan::server {
namespace {

using web::http::http_request;
using web::http::http_response;
using web::http::experimental::listener::http_listener;

constexpr absl::string_view kText = "text/plain; charset=utf-8";

// Start() with port 0 retries this often when another process grabs the port
// between our probe and cpprestsdk's bind.
constexpr int kFreePortAttempts = 5;

// "host:port" keys of the HealthServers listening in this process; see the
// header on why cpprestsdk must never see the same key twice.
ABSL_CONST_INIT absl::Mutex claimed_mu(absl::kConstInit);
std::set<std::string>& ClaimedKeys() ABSL_EXCLUSIVE_LOCKS_REQUIRED(claimed_mu) {
  static auto* keys = new std::set<std::string>();
  return *keys;
}

bool Claim(const std::string& key) {
  absl::MutexLock lock(&claimed_mu);
  return ClaimedKeys().insert(key).second;
}

void Release(const std::string& key) {
  absl::MutexLock lock(&claimed_mu);
  ClaimedKeys().erase(key);
}

struct HostPort {
  std::string host;
  int port = 0;
};

absl::StatusOr<HostPort> ParseAddress(absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\" is not host:port"));
  }
  HostPort hp;
  hp.host = absl::AsciiStrToLower(address.substr(0, colon));
  absl::string_view port = address.substr(colon + 1);
  if (hp.host.find_first_of(":[]") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen address \"", address, "\": IPv6 is not supported by cpprestsdk's listener"));
  }
  if (hp.host.empty()) {
    hp.host = "0.0.0.0";
  }
  if (port.empty() || !absl::SimpleAtoi(port, &hp.port) || hp.port < 0 || hp.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\": port must be 0..65535"));
  }
  return hp;
}

// Asks the kernel for a port that is free on every IPv4 address right now.
absl::StatusOr<int> PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("picking a free port: ", std::strerror(err)));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool IsAddressInUse(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& se) {
    return se.code() == boost::asio::error::address_in_use;
  } catch (...) {
    return false;
  }
}

std::string Describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

// Sends `r` without blocking. A reply whose write fails (client gone) completes
// its task with an exception, which pplx turns into std::terminate if nobody
// looks at it; so it is observed and dropped here.
void Reply(http_request& request, HealthServer::Response r) {
  try {
    http_response response(static_cast<web::http::status_code>(r.status));
    response.set_body(std::move(r.body), std::string(r.content_type));
    if (r.status == web::http::status_codes::MethodNotAllowed) {
      response.headers().add("Allow", "GET");
    }
    request.reply(response).then([](pplx::task<void> sent) {
      try {
        sent.get();
      } catch (const std::exception& e) {
        spdlog::debug("http server: reply not delivered error=\"{}\"", e.what());
      }
    });
  } catch (const std::exception& e) {
    spdlog::debug("http server: reply failed error=\"{}\"", e.what());
  }
}

}  // namespace

void InitCppRestThreads(size_t n) {
  static std::once_flag once;
  std::call_once(once, [n] {
    const size_t threads = std::max<size_t>(n, 2);
    try {
      crossplat::threadpool::initialize_with_threads(threads);
      spdlog::debug("cpprestsdk thread pool started threads={}", threads);
    } catch (const std::exception& e) {
      spdlog::warn(
          "cpprestsdk thread pool was started before InitCppRestThreads({}) and keeps its "
          "size: call it first in main() error=\"{}\"",
          threads, e.what());
    }
  });
}

HealthServer::HealthServer(std::string address, std::shared_ptr<prometheus::Collectable> registry)
    : address_(std::move(address)),
      registry_(registry != nullptr ? std::move(registry) : capstan::Metrics::Get().registry),
      liveness_(std::make_shared<const CheckList>()),
      readiness_(std::make_shared<const CheckList>()) {}

HealthServer::~HealthServer() { Stop(); }

absl::Status HealthServer::AddLivenessCheck(std::string name, Check check) {
  absl::MutexLock lock(&mu_);
  return AddCheck(liveness_, std::move(name), std::move(check));
}

absl::Status HealthServer::AddReadinessCheck(std::string name, Check check) {
  absl::MutexLock lock(&mu_);
  return AddCheck(readiness_, std::move(name), std::move(check));
}

absl::Status HealthServer::AddCheck(std::shared_ptr<const CheckList>& list, std::string name,
                                    Check check) {
  if (name.empty()) {
    return absl::InvalidArgumentError("health check needs a name");
  }
  if (!check) {
    return absl::InvalidArgumentError(absl::StrCat("health check \"", name, "\" has no function"));
  }
  for (const NamedCheck& c : *list) {
    if (c.name == name) {
      return absl::AlreadyExistsError(absl::StrCat("health check \"", name, "\" already added"));
    }
  }
  auto updated = std::make_shared<CheckList>(*list);
  updated->push_back({std::move(name), std::move(check)});
  list = std::move(updated);
  return absl::OkStatus();
}

absl::Status HealthServer::Start() {
  if (listener_ != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("http server on ", address_, " already started"));
  }
  auto parsed = ParseAddress(address_);
  if (!parsed.ok()) {
    return parsed.status();
  }
  const HostPort hp = *std::move(parsed);

  const int attempts = hp.port == 0 ? kFreePortAttempts : 1;
  absl::Status last;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    int port = hp.port;
    if (port == 0) {
      auto picked = PickFreePort();
      if (!picked.ok()) {
        return picked.status();
      }
      port = *picked;
    }
    const std::string key = absl::StrCat(hp.host, ":", port);
    if (!Claim(key)) {
      last = absl::AlreadyExistsError(
          absl::StrCat("another http server in this process already listens on ", key));
      if (hp.port == 0) {
        continue;
      }
      return last;
    }

    std::exception_ptr failure;
    try {
      web::uri_builder uri;
      uri.set_scheme("http").set_host(hp.host).set_port(port).set_path("/");
      auto listener = std::make_unique<http_listener>(uri.to_uri());
      auto handler = [this](http_request request) {
        Response r;
        try {
          r = Handle(request.method(), request.relative_uri().path());
        } catch (const std::exception& e) {
          r = {500, std::string(kText), "internal error\n"};
          spdlog::warn("http server: request failed error=\"{}\"", e.what());
        }
        Reply(request, std::move(r));
      };
      listener->support(handler);
      // Without these, cpprestsdk answers OPTIONS itself and echoes TRACE
      // requests (headers included) back to the caller.
      listener->support(web::http::methods::OPTIONS, handler);
      listener->support(web::http::methods::TRCE, handler);
      listener->open().wait();
      listener_ = std::move(listener);
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure == nullptr) {
      claimed_key_ = key;
      port_ = port;
      spdlog::info("http server listening address={} endpoints=/healthz,/readyz,/metrics", key);
      return absl::OkStatus();
    }
    Release(key);
    last = absl::UnavailableError(absl::StrCat("cannot listen on ", key, ": ", Describe(failure)));
    if (!(hp.port == 0 && IsAddressInUse(failure))) {
      return last;
    }
  }
  return last;
}

void HealthServer::Stop() {
  if (listener_ == nullptr) {
    return;
  }
  try {
    listener_->close().wait();
  } catch (const std::exception& e) {
    spdlog::warn("http server: close failed address={} error=\"{}\"", claimed_key_, e.what());
  }
  listener_.reset();
  Release(claimed_key_);
  spdlog::info("http server stopped address={}", claimed_key_);
  claimed_key_.clear();
  port_ = 0;
}

HealthServer::Response HealthServer::Handle(absl::string_view method,
                                            absl::string_view path) const {
  enum class Endpoint { kHealthz, kReadyz, kMetrics };
  Endpoint endpoint;
  if (path == "/healthz") {
    endpoint = Endpoint::kHealthz;
  } else if (path == "/readyz") {
    endpoint = Endpoint::kReadyz;
  } else if (path == "/metrics") {
    endpoint = Endpoint::kMetrics;
  } else {
    return {404, std::string(kText), "404 page not found\n"};
  }
  if (method != "GET") {
    return {405, std::string(kText), "method not allowed\n"};
  }

  std::shared_ptr<const CheckList> checks;
  switch (endpoint) {
    case Endpoint::kHealthz: {
      {
        absl::MutexLock lock(&mu_);
        checks = liveness_;
      }
      // 500 like kube-apiserver's /healthz; a failing liveness probe restarts the pod.
      return RunChecks(checks, 500, "healthz");
    }
    case Endpoint::kReadyz: {
      {
        absl::MutexLock lock(&mu_);
        checks = readiness_;
      }
      // 503: alive, but keep traffic away for now.
      return RunChecks(checks, 503, "readyz");
    }
    case Endpoint::kMetrics:
      return MetricsResponse();
  }
  return {500, std::string(kText), "internal error\n"};
}

HealthServer::Response HealthServer::RunChecks(const std::shared_ptr<const CheckList>& list,
                                               int failure_status,
                                               absl::string_view endpoint) const {
  std::string failed;
  for (const NamedCheck& c : *list) {
    try {
      if (!c.check()) {
        absl::StrAppend(&failed, "[-]", c.name, " failed\n");
      }
    } catch (const std::exception& e) {
      absl::StrAppend(&failed, "[-]", c.name, " failed: ", e.what(), "\n");
    } catch (...) {
      absl::StrAppend(&failed, "[-]", c.name, " failed: unknown exception\n");
    }
  }
  if (failed.empty()) {
    return {200, std::string(kText), "ok"};
  }
  absl::StrAppend(&failed, endpoint, " check failed\n");
  return {failure_status, std::string(kText), std::move(failed)};
}

HealthServer::Response HealthServer::MetricsResponse() const {
  return {200, std::string(kMetricsContentType),
          prometheus::TextSerializer().Serialize(registry_->Collect())};
}

}  // namespace capstan::server
