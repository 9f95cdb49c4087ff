// Client and Informer against a scripted transport: what the API server answers is
// hostile or broken (mistyped fields, objects nested 10,000 deep, a watch that goes
// silent). Nothing may throw out of the client or end an informer's thread.

#include "capstan/kube/client.h"

#include <atomic>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "capstan/kube/informer.h"
#include "capstan/kube/object_limits.h"
#include "capstan/kube/resource.h"
#include "capstan/kube/transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "openssl/ssl.h"
#include "openssl/x509.h"

namespace capstan::kube {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

bool Eventually(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// Answers every request with `list_body`; a watch sends `watch_lines` and then stays
// open, silent, until cancelled (a half-open connection looks exactly like that).
class ScriptedTransport : public Transport {
 public:
  void SetList(std::string body) {
    absl::MutexLock lock(&mu_);
    list_body_ = std::move(body);
  }
  void SetWatchLines(std::vector<std::string> lines) {
    absl::MutexLock lock(&mu_);
    watch_lines_ = std::move(lines);
  }
  int Streams() const {
    absl::MutexLock lock(&mu_);
    return streams_;
  }
  int Lists() const {
    absl::MutexLock lock(&mu_);
    return lists_;
  }

  absl::StatusOr<HttpResponse> Do(const HttpRequest&) override {
    absl::MutexLock lock(&mu_);
    ++lists_;
    return HttpResponse{200, list_body_, {}};
  }

  absl::Status Stream(const HttpRequest&, const std::function<bool(absl::string_view)>& on_line,
                      int* status_code, Cancellation* cancel) override {
    std::vector<std::string> lines;
    {
      absl::MutexLock lock(&mu_);
      ++streams_;
      lines = watch_lines_;
    }
    *status_code = 200;
    for (const std::string& l : lines) {
      if (!on_line(l)) return absl::OkStatus();
    }
    while (!cancel->cancelled()) absl::SleepFor(absl::Milliseconds(2));
    return absl::CancelledError("watch cancelled");
  }

 private:
  mutable absl::Mutex mu_;
  std::string list_body_ ABSL_GUARDED_BY(mu_) =
      R"({"kind": "ConfigMapList", "metadata": {"resourceVersion": "5"}, "items": []})";
  std::vector<std::string> watch_lines_ ABSL_GUARDED_BY(mu_);
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  int lists_ ABSL_GUARDED_BY(mu_) = 0;
};

Client::Options NoRetries() {
  Client::Options o;
  o.qps = 0;
  o.max_retries = 0;
  return o;
}

std::string Nested(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += R"({"a": )";
  s += "1";
  for (int i = 0; i < depth; ++i) s += "}";
  return s;
}

std::string ConfigMap(const std::string& name, const std::string& data = R"({"k": "v"})") {
  return absl::StrCat(R"({"metadata": {"name": ")", name,
                      R"(", "namespace": "ns", "resourceVersion": "3"}, "data": )", data, "}");
}

TEST(ClientList, MistypedAnswersAreErrorsNotExceptions) {
  struct Case {
    const char* name;
    std::string body;
    std::string want;  // substring of the error
  };
  const std::vector<Case> cases = {
      {"resourceVersion a number", R"({"metadata": {"resourceVersion": 5}, "items": []})",
       "metadata.resourceVersion is a number"},
      {"continue an object", R"({"metadata": {"continue": {}}, "items": []})",
       "metadata.continue is a object"},
      {"metadata a string", R"({"metadata": "x", "items": []})", "metadata is not an object"},
      {"items an object", R"({"metadata": {}, "items": {}})", "items is not an array"},
      {"item a number", R"({"metadata": {}, "items": [1]})", "items[0] is a number"},
      {"list a number", "42", "not a list"},
      {"not JSON", "{", "invalid JSON"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto transport = std::make_unique<ScriptedTransport>();
    transport->SetList(c.body);
    Client client(std::move(transport), NoRetries());
    absl::StatusOr<ListPage> page = client.List(resources::ConfigMaps(), "ns");
    ASSERT_FALSE(page.ok());
    EXPECT_THAT(std::string(page.status().message()), HasSubstr(c.want));
  }
}

TEST(ClientList, ObjectsNestedTooDeepAreLeftOut) {
  auto transport = std::make_unique<ScriptedTransport>();
  transport->SetList(absl::StrCat(
      R"({"metadata": {"resourceVersion": "9"}, "items": [)", ConfigMap("deep", Nested(10000)), ",",
      ConfigMap("edge", Nested(kMaxObjectDepth - 3)), ",", ConfigMap("fine"), "]}"));
  Client client(std::move(transport), NoRetries());
  absl::StatusOr<ListPage> page = client.List(resources::ConfigMaps(), "ns");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(ObjectKey(page->items[0]), "ns/edge");
  EXPECT_EQ(ObjectKey(page->items[1]), "ns/fine");
  EXPECT_EQ(page->resource_version, "9");
}

TEST(ClientWatch, MistypedEventsEndTheWatchWithAnError) {
  struct Case {
    const char* name;
    std::string line;
  };
  const std::vector<Case> cases = {
      {"type a number", R"({"type": 1, "object": {}})"},
      {"object a string", R"({"type": "ADDED", "object": "x"})"},
      {"no object", R"({"type": "ADDED"})"},
      {"error code a string", R"({"type": "ERROR", "object": {"code": "410"}})"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto transport = std::make_unique<ScriptedTransport>();
    transport->SetWatchLines({c.line});
    Client client(std::move(transport), NoRetries());
    Cancellation cancel;
    int events = 0;
    absl::Status s = client.Watch(
        resources::ConfigMaps(), "ns", {},
        [&](WatchEvent&&) {
          ++events;
          return true;
        },
        &cancel);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(events, 0);
  }
}

TEST(StatusFromResponse, RejectedValuesAreScrubbed) {
  struct Case {
    const char* name;
    std::string message;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"quoted",
       R"(Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].env[0].value: Invalid value: \"hunter2\": must be shorter)",
       R"(Deployment.apps "web" is invalid: spec.template.spec.containers[0].env[0].value: Invalid value: "<redacted>": must be shorter)"},
      {"escaped quote inside", R"(x: Invalid value: \"a\\\"hunter2\": bad)",
       R"(x: Invalid value: "<redacted>": bad)"},
      {"number", R"(spec.replicas: Invalid value: 1234567: must be less)",
       R"(spec.replicas: Invalid value: <redacted>: must be less)"},
      {"several",
       R"([a: Unsupported value: \"hunter2\": supported values: \"A\", b: Duplicate value: \"swordfish\"])",
       R"([a: Unsupported value: "<redacted>": supported values: "A", b: Duplicate value: "<redacted>"])"},
      {"nothing to scrub", "the server could not find the requested resource",
       "the server could not find the requested resource"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string body =
        absl::StrCat(R"({"kind": "Status", "reason": "Invalid", "message": ")", c.message, R"("})");
    absl::Status s = StatusFromResponse(422, body, "apply deployments ns/web");
    EXPECT_EQ(std::string(s.message()), "apply deployments ns/web: " + c.want);
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr("hunter2")));
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr("swordfish")));
  }
}

TEST(InformerTest, HalfOpenWatchIsReopenedAfterTheIdleLimit) {
  auto owned = std::make_unique<ScriptedTransport>();
  ScriptedTransport* transport = owned.get();
  Client client(std::move(owned), NoRetries());
  InformerOptions o;
  o.ns = "ns";
  o.watch_idle_limit = absl::Milliseconds(300);
  Informer informer(client, resources::ConfigMaps(), o);
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(absl::Seconds(20)));
  // The first watch never hears a thing; without the idle limit it would stay open
  // (the transport's own timeout is 15 minutes).
  ASSERT_TRUE(Eventually([&] { return transport->Streams() >= 2; }))
      << "streams: " << transport->Streams();
  EXPECT_EQ(informer.LastResourceVersion(), "5");
  informer.Stop();
}

TEST(InformerTest, BookmarksKeepAQuietWatchAlive) {
  auto owned = std::make_unique<ScriptedTransport>();
  ScriptedTransport* transport = owned.get();
  transport->SetWatchLines(
      {R"({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}})"});
  Client client(std::move(owned), NoRetries());
  InformerOptions o;
  o.ns = "ns";
  o.watch_idle_limit = absl::Seconds(30);
  Informer informer(client, resources::ConfigMaps(), o);
  informer.Start();
  ASSERT_TRUE(Eventually([&] { return informer.LastResourceVersion() == "7"; }));
  EXPECT_LT(informer.SinceProgress(), absl::Seconds(30));
  EXPECT_THAT(StalledInformers(absl::Seconds(30)), Not(::testing::Contains("configmaps")));
  EXPECT_EQ(transport->Streams(), 1);
  informer.Stop();
}

TEST(InformerTest, AThrowingProjectionIsAnErrorAndARelist) {
  auto owned = std::make_unique<ScriptedTransport>();
  ScriptedTransport* transport = owned.get();
  transport->SetList(
      absl::StrCat(R"({"metadata": {"resourceVersion": "9"}, "items": [)", ConfigMap("a"), "]}"));
  Client client(std::move(owned), NoRetries());
  std::atomic<int> calls = 0;
  InformerOptions o;
  o.ns = "ns";
  o.projection = [&calls](Object obj) -> Object {
    // A string where a number belongs: nlohmann throws type_error on get<int>().
    if (calls++ == 0) return obj["metadata"]["name"].get<int>();
    return obj;
  };
  Informer informer(client, resources::ConfigMaps(), o);
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(absl::Seconds(20)));
  EXPECT_EQ(informer.Size(), 1u);
  EXPECT_GE(transport->Lists(), 2);
  informer.Stop();
}

TEST(CppRestTransport, TrustsTheClusterCaWithoutTouchingTheEnvironment) {
  // Exec credential plugins inherit the environment; an SSL_CERT_FILE pointed at
  // nothing broke their own TLS. The trust store is built from the cluster CA instead,
  // and OpenSSL's default store is never loaded once a cluster CA is configured.
  const char* before = std::getenv("SSL_CERT_FILE");
  const std::string saved = before != nullptr ? before : "";
  unsetenv("SSL_CERT_FILE");
  RestConfig config;
  config.server = "https://127.0.0.1:1";
  config.ca_pem = "-----BEGIN CERTIFICATE-----\nnot parsed until a connection\n";
  absl::StatusOr<std::unique_ptr<Transport>> transport = NewCppRestTransport(config);
  ASSERT_TRUE(transport.ok()) << transport.status();
  EXPECT_EQ(std::getenv("SSL_CERT_FILE"), nullptr);

  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(SSL_CTX_set_default_verify_paths(ctx), 1);
  EXPECT_EQ(sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx))), 0)
      << "the system CA bundle was loaded";
  SSL_CTX_free(ctx);
  if (!saved.empty()) setenv("SSL_CERT_FILE", saved.c_str(), 1);
}

}  // namespace
}  // namespace capstan::kube
