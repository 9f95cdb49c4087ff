#include "capstan/server/http_server.h"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

// cpprestsdk's `U(x)` macro breaks gtest templates that name a parameter U.
#ifndef _TURN_OFF_PLATFORM_STRING
#define _TURN_OFF_PLATFORM_STRING
#endif
#include <cpprest/http_client.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "capstan/common/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

struct Got {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string allow;
};

// One cpprestsdk client per server, as production code keeps one per peer. It
// pools keep-alive connections, which the stop tests rely on.
class Client {
 public:
  explicit Client(int port) : client_(MakeClient(port)) {}

  absl::StatusOr<Got> Send(const std::string& method, const std::string& path) {
    try {
      web::http::http_response r = client_.request(method, path).get();
      Got got;
      got.status = r.status_code();
      got.body = r.extract_string(true).get();
      got.content_type = r.headers().content_type();
      if (r.headers().has("Allow")) {
        got.allow = r.headers()["Allow"];
      }
      return got;
    } catch (const std::exception& e) {
      return absl::UnavailableError(e.what());
    }
  }
  absl::StatusOr<Got> Get(const std::string& path) { return Send("GET", path); }

 private:
  static web::http::client::http_client MakeClient(int port) {
    web::http::client::http_client_config config;
    config.set_timeout(std::chrono::seconds(10));
    return web::http::client::http_client(absl::StrCat("http://127.0.0.1:", port), config);
  }

  web::http::client::http_client client_;
};

// A plain listening socket on 127.0.0.1:`port` (0: any), as another process
// holding the port would have; -1 when the port cannot be taken.
int ListenOnLoopback(int port, bool reuse_address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  const int one = 1;
  if (reuse_address) {
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 1) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int PortOf(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

int ThreadCount() {
  int n = 0;
  if (DIR* dir = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(dir)) {
      n += e->d_name[0] != '.';
    }
    ::closedir(dir);
  }
  return n;
}

class HealthServerTest : public ::testing::Test {
 protected:
  // Before any cpprestsdk use in this process, as main() does.
  static void SetUpTestSuite() { InitCppRestThreads(2); }

  // Starts `server` on a free loopback port.
  static int StartOnFreePort(HealthServer& server) {
    absl::Status s = server.Start();
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_GT(server.port(), 0);
    return server.port();
  }
};

// --- Routing, no sockets -------------------------------------------------------

TEST_F(HealthServerTest, RoutesByPathThenMethod) {
  HealthServer server("127.0.0.1:0");
  struct Case {
    const char* name;
    const char* method;
    const char* path;
    int status;
  };
  const Case cases[] = {
      {"healthz", "GET", "/healthz", 200},
      {"readyz without checks", "GET", "/readyz", 200},
      {"metrics", "GET", "/metrics", 200},
      {"unknown path", "GET", "/nope", 404},
      {"root", "GET", "/", 404},
      {"trailing slash", "GET", "/healthz/", 404},
      {"unknown path, other method", "POST", "/nope", 404},
      {"POST healthz", "POST", "/healthz", 405},
      {"HEAD readyz", "HEAD", "/readyz", 405},
      {"DELETE metrics", "DELETE", "/metrics", 405},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(server.Handle(c.method, c.path).status, c.status);
  }
}

TEST_F(HealthServerTest, RejectsBadChecks) {
  HealthServer server("127.0.0.1:0");
  EXPECT_EQ(server.AddReadinessCheck("", [] { return true; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server.AddReadinessCheck("nil", nullptr).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(server.AddReadinessCheck("informers-synced", [] { return true; }).ok());
  EXPECT_EQ(server.AddReadinessCheck("informers-synced", [] { return true; }).code(),
            absl::StatusCode::kAlreadyExists);
  // Liveness and readiness are separate namespaces.
  EXPECT_TRUE(server.AddLivenessCheck("informers-synced", [] { return true; }).ok());
}

TEST_F(HealthServerTest, ThrowingCheckFailsWithItsMessage) {
  HealthServer server("127.0.0.1:0");
  ASSERT_TRUE(
      server.AddReadinessCheck("explodes", []() -> bool { throw std::runtime_error("cache gone"); })
          .ok());
  HealthServer::Response r = server.Handle("GET", "/readyz");
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("[-]explodes failed: cache gone\n"));
}

TEST_F(HealthServerTest, RejectsMalformedAddresses) {
  for (const char* address : {"", "8080", "localhost:", "localhost:http", "localhost:65536",
                              "localhost:-1", "[::1]:8080", "::1:8080"}) {
    SCOPED_TRACE(address);
    HealthServer server(address);
    absl::Status s = server.Start();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_EQ(server.port(), 0);
  }
}

// --- Over the wire -------------------------------------------------------------

TEST_F(HealthServerTest, HealthzServesOkAndLivenessCheckCanFailIt) {
  HealthServer server("127.0.0.1:0");
  std::atomic<bool> workers_alive{true};
  ASSERT_TRUE(server.AddLivenessCheck("workers", [&] { return workers_alive.load(); }).ok());
  Client client(StartOnFreePort(server));

  absl::StatusOr<Got> got = client.Get("/healthz");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body, "ok");
  EXPECT_THAT(got->content_type, StartsWith("text/plain"));

  workers_alive = false;
  got = client.Get("/healthz");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status, 500);
  EXPECT_EQ(got->body, "[-]workers failed\nhealthz check failed\n");
}

TEST_F(HealthServerTest, ReadyzFlipsFrom503To200WhenChecksPass) {
  HealthServer server("127.0.0.1:0");
  std::atomic<bool> synced{false};
  ASSERT_TRUE(server.AddReadinessCheck("informers-synced", [&] { return synced.load(); }).ok());
  ASSERT_TRUE(server.AddReadinessCheck("always", [] { return true; }).ok());
  Client client(StartOnFreePort(server));

  absl::StatusOr<Got> got = client.Get("/readyz");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status, 503);
  EXPECT_THAT(got->body, HasSubstr("[-]informers-synced failed\n"));
  EXPECT_THAT(got->body, Not(HasSubstr("always")));

  synced = true;
  got = client.Get("/readyz");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body, "ok");
}

TEST_F(HealthServerTest, CheckAddedAfterStartIsHonoured) {
  HealthServer server("127.0.0.1:0");
  Client client(StartOnFreePort(server));
  ASSERT_TRUE(server.AddReadinessCheck("late", [] { return false; }).ok());
  absl::StatusOr<Got> got = client.Get("/readyz");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status, 503);
  EXPECT_THAT(got->body, HasSubstr("[-]late failed"));
}

TEST_F(HealthServerTest, MetricsExposesProcessRegistry) {
  HealthServer server("127.0.0.1:0");
  Client client(StartOnFreePort(server));
  prometheus::Counter& counter = Metrics::Get().reconcile_total->Add(
      {{"controller", "http_server_test"}, {"result", "success"}});
  counter.Increment(3);

  absl::StatusOr<Got> got = client.Get("/metrics");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status, 200);
  EXPECT_THAT(got->content_type, StartsWith("text/plain; version=0.0.4"));
  EXPECT_THAT(got->body, HasSubstr("# TYPE capstan_reconcile_total counter\n"));
  EXPECT_THAT(got->body,
              HasSubstr(absl::StrCat(
                  "capstan_reconcile_total{controller=\"http_server_test\",result=\"success\"} ",
                  counter.Value(), "\n")));
}

TEST_F(HealthServerTest, UnknownPathIs404AndOtherMethodsAre405) {
  HealthServer server("127.0.0.1:0");
  Client client(StartOnFreePort(server));
  struct Case {
    const char* method;
    const char* path;
    int status;
  };
  // OPTIONS and TRACE included: cpprestsdk would answer those itself.
  const Case cases[] = {
      {"GET", "/nope", 404},       {"GET", "/healthz?verbose=1", 200},
      {"POST", "/healthz", 405},   {"PUT", "/readyz", 405},
      {"DELETE", "/metrics", 405}, {"OPTIONS", "/healthz", 405},
      {"TRACE", "/healthz", 405},  {"POST", "/nope", 404},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.method, " ", c.path));
    absl::StatusOr<Got> got = client.Send(c.method, c.path);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->status, c.status);
    if (c.status == 405) {
      EXPECT_EQ(got->allow, "GET");
    }
  }
}

TEST_F(HealthServerTest, WildcardHostServesLoopback) {
  HealthServer server(":0");
  Client client(StartOnFreePort(server));
  absl::StatusOr<Got> got = client.Get("/healthz");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status, 200);
}

// --- Lifecycle -----------------------------------------------------------------

TEST_F(HealthServerTest, OccupiedPortIsUnavailableNotAnException) {
  const int fd = ListenOnLoopback(0, /*reuse_address=*/false);
  ASSERT_GE(fd, 0);
  const int port = PortOf(fd);

  HealthServer server(absl::StrCat("127.0.0.1:", port));
  absl::Status s = server.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("127.0.0.1:", port)));
  EXPECT_THAT(s.message(), HasSubstr("in use"));
  EXPECT_EQ(server.port(), 0);
  ::close(fd);

  // The failed attempt leaves nothing behind: the same address works now.
  ASSERT_TRUE(server.Start().ok());
  EXPECT_EQ(server.port(), port);
}

TEST_F(HealthServerTest, SecondServerOnSameAddressIsRefusedAndFirstKeepsServing) {
  HealthServer first("127.0.0.1:0");
  const int port = StartOnFreePort(first);
  Client client(port);

  {
    HealthServer second(absl::StrCat("127.0.0.1:", port));
    EXPECT_EQ(second.Start().code(), absl::StatusCode::kAlreadyExists);
  }

  absl::StatusOr<Got> got = client.Get("/healthz");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status, 200);
}

TEST_F(HealthServerTest, StartTwiceIsFailedPrecondition) {
  HealthServer server("127.0.0.1:0");
  StartOnFreePort(server);
  EXPECT_EQ(server.Start().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(HealthServerTest, DestructorStopsAndFreesThePortDespiteKeepAliveClient) {
  int port = 0;
  // Outlives the server and keeps its pooled connection open across the stop.
  std::unique_ptr<Client> client;
  {
    HealthServer server("127.0.0.1:0");
    port = StartOnFreePort(server);
    client = std::make_unique<Client>(port);
    absl::StatusOr<Got> got = client->Get("/healthz");
    ASSERT_TRUE(got.ok()) << got.status();
  }

  // Linux refuses this bind while any socket listens on the port, SO_REUSEADDR or not.
  const int fd = ListenOnLoopback(port, /*reuse_address=*/true);
  EXPECT_GE(fd, 0) << "port " << port << " still held";
  if (fd >= 0) {
    ::close(fd);
  }

  // And a new server can take the same address again.
  HealthServer again(absl::StrCat("127.0.0.1:", port));
  ASSERT_TRUE(again.Start().ok());
  absl::StatusOr<Got> got = Client(port).Get("/healthz");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status, 200);
}

TEST_F(HealthServerTest, StopIsIdempotent) {
  HealthServer server("127.0.0.1:0");
  StartOnFreePort(server);
  server.Stop();
  EXPECT_EQ(server.port(), 0);
  server.Stop();
}

TEST_F(HealthServerTest, ThreadPoolStaysSmall) {
  HealthServer server("127.0.0.1:0");
  Client client(StartOnFreePort(server));
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(client.Get("/healthz").ok());
  }
  // main + the 2 pool threads + a few asio helpers (resolver, epoll), not 40.
  EXPECT_LE(ThreadCount(), 8);
}

}  // namespace
}  // namespace capstan::server
