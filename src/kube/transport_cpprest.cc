// The cpprestsdk edge: the only file that knows about pplx, asio and
// std::chrono. Two long-lived http_clients per API server: one for ordinary
// requests (RestConfig::timeout) and one for watch streams, whose requests
// stay open for minutes. cpprestsdk exceptions are caught here and become
// absl::Status; nothing above sees them.

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "capstan/common/log.h"
#include "capstan/common/metrics.h"
#include "capstan/kube/transport.h"
#include "cpprest/http_client.h"
#include "cpprest/uri_builder.h"
#include "openssl/ssl.h"
#include "prometheus/counter.h"

namespace capstan::kube {
namespace {

// Set once a transport with a cluster CA exists: from then on no SSL_CTX in this
// process loads OpenSSL's default trust store (see below).
std::atomic<bool> cluster_ca_only{false};

}  // namespace
}  // namespace capstan::kube

// The trust store is the cluster CA alone. cpprestsdk calls
// SSL_CTX_set_default_verify_paths() on every connection's fresh SSL_CTX before our
// callback adds the cluster CA, which parses the whole system bundle each time
// (~140 certificates: measured 20-150 ms of CPU and ~1.5 MB of heap per connection, and
// there is one connection per watch). Setting SSL_CERT_FILE to nothing avoided that but
// changed the process environment while threads run (and exec credential plugins
// inherited it, so their own TLS failed). Instead this definition takes the place of
// libssl's for the whole process (the executable's symbol wins the dynamic lookup):
// once a transport with a cluster CA exists it loads nothing, else it forwards to
// libssl's. Other TLS clients (the analysis providers, analysis/http.cc) load the system
// bundle themselves when they want it.
#ifdef CAPSTAN_STATIC_BINARY
// The static binary (CAPSTAN_STATIC) has no dynamic lookup, and libssl.a's definition would
// clash with this one: the link redirects every call to __wrap_ (-Wl,--wrap), and __real_
// names libssl's.
extern "C" int __real_SSL_CTX_set_default_verify_paths(SSL_CTX* ctx);
extern "C" int __wrap_SSL_CTX_set_default_verify_paths(SSL_CTX* ctx) {
  if (capstan::kube::cluster_ca_only.load(std::memory_order_acquire)) return 1;
  return __real_SSL_CTX_set_default_verify_paths(ctx);
}
#else
extern "C" int SSL_CTX_set_default_verify_paths(SSL_CTX* ctx) {
  if (capstan::kube::cluster_ca_only.load(std::memory_order_acquire)) return 1;
  using Fn = int (*)(SSL_CTX*);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "SSL_CTX_set_default_verify_paths"));
  return real != nullptr ? real(ctx) : 0;
}
#endif

namespace capstan::kube {
namespace {

using web::http::client::http_client;
using web::http::client::http_client_config;

// Watches are closed by the server after WatchOptions::timeout (minutes); a
// client-side limit only catches a dead connection that sends nothing at all.
constexpr std::chrono::seconds kStreamTimeout{15 * 60};

// A watch keeps a read buffer this large between events at most.
constexpr size_t kKeepBuffer = 64 * 1024;

// TLS session resumption across connections to the API server.
//
// cpprestsdk builds a fresh SSL_CTX for every connection, so OpenSSL's own
// client session cache never sees a second connection, and each one pays a
// full handshake: a certificate signature and verification on both sides
// (~3-4 ms of CPU with RSA-2048). An operator opens one connection per watched
// resource plus a few for requests (~30 at start-up, all at once). This cache
// keeps the newest session the server handed out (a TLS 1.3 ticket) and offers
// it on every new connection; the server resumes it or falls back to a full
// handshake. The server certificate was verified when the session was made,
// for this same server (one cache per transport, one server per transport).
class SessionCache {
 public:
  SessionCache() = default;
  SessionCache(const SessionCache&) = delete;
  SessionCache& operator=(const SessionCache&) = delete;
  ~SessionCache() {
    if (session_ != nullptr) SSL_SESSION_free(session_);
  }

  // Hooks `ctx` (one connection's) up to this cache. The cache must outlive it.
  void Attach(SSL_CTX* ctx) {
    SSL_CTX_set_ex_data(ctx, Index(), this);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, &SessionCache::OnNewSession);
    SSL_CTX_set_info_callback(ctx, &SessionCache::OnInfo);
    // An idle connection (every watch, most of the time) gives back its
    // ~34 KiB of TLS record buffers until the next record.
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  }

 private:
  static int Index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
  }
  static SessionCache* Of(const SSL* ssl) {
    return static_cast<SessionCache*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), Index()));
  }

  // A new session (ticket) from the server: keep it; we own the reference.
  static int OnNewSession(SSL* ssl, SSL_SESSION* session) {
    SessionCache* cache = Of(ssl);
    if (cache == nullptr) return 0;
    absl::MutexLock lock(&cache->mu_);
    if (cache->session_ != nullptr) SSL_SESSION_free(cache->session_);
    cache->session_ = session;
    return 1;
  }

  // At the start of a client handshake, before the ClientHello is built:
  // offer the newest session.
  static void OnInfo(const SSL* ssl, int where, int /*ret*/) {
    if ((where & SSL_CB_HANDSHAKE_DONE) != 0) {
      const bool resumed = SSL_session_reused(ssl) == 1;
      Metrics::Get().tls_handshakes->Add({{"resumed", resumed ? "true" : "false"}}).Increment();
      return;
    }
    if ((where & SSL_CB_HANDSHAKE_START) == 0 || SSL_is_server(ssl) != 0) return;
    SessionCache* cache = Of(ssl);
    if (cache == nullptr) return;
    absl::MutexLock lock(&cache->mu_);
    if (cache->session_ != nullptr && SSL_SESSION_is_resumable(cache->session_) == 1 &&
        SSL_get_session(ssl) == nullptr) {
      SSL_set_session(const_cast<SSL*>(ssl), cache->session_);  // takes its own reference
    }
  }

  absl::Mutex mu_;
  SSL_SESSION* session_ ABSL_GUARDED_BY(mu_) = nullptr;
};

class CppRestTransport final : public Transport {
 public:
  explicit CppRestTransport(RestConfig config)
      : config_(std::move(config)),
        client_(config_.server, MakeConfig(config_.timeout, 16 * 1024)),
        // Watch events are small and there is one idle connection per watched
        // resource: a small read buffer each.
        stream_client_(config_.server, MakeConfig(absl::FromChrono(kStreamTimeout), 4 * 1024)) {}

  absl::StatusOr<HttpResponse> Do(const HttpRequest& request) override {
    for (int attempt = 0;; ++attempt) {
      auto req = Build(request);
      if (!req.ok()) return req.status();
      try {
        web::http::http_response resp = client_.request(*req).get();
        HttpResponse out;
        out.status = resp.status_code();
        CopyHeaders(resp, &out);
        out.body = resp.extract_utf8string(true).get();
        // An expired or rotated token: fetch a fresh one and try once more.
        if (out.status == 401 && attempt == 0 && config_.token_source != nullptr) {
          config_.token_source->Invalidate();
          continue;
        }
        return out;
      } catch (const std::exception& e) {
        return absl::UnavailableError(
            absl::StrCat(request.method, " ", request.path, ": ", e.what()));
      }
    }
  }

  absl::Status Stream(const HttpRequest& request,
                      const std::function<bool(absl::string_view line)>& on_line, int* status_code,
                      Cancellation* cancel) override {
    auto req = Build(request);
    if (!req.ok()) return req.status();
    pplx::cancellation_token_source cts;
    if (cancel != nullptr) {
      cancel->set_on_cancel([cts]() mutable { cts.cancel(); });
      if (cancel->cancelled()) cts.cancel();
    }
    struct ClearOnExit {
      Cancellation* c;
      ~ClearOnExit() {
        if (c != nullptr) c->set_on_cancel(nullptr);
      }
    } clear{cancel};
    try {
      web::http::http_response resp = stream_client_.request(*req, cts.get_token()).get();
      *status_code = resp.status_code();
      if (resp.status_code() < 200 || resp.status_code() >= 300) {
        std::string body = resp.extract_utf8string(true).get();
        on_line(body);
        return absl::OkStatus();
      }
      // Read the body as it arrives; each watch event is one line of JSON.
      // getn(n) on cpprestsdk's producer/consumer buffer waits until n bytes are
      // there, so block for one byte (bumpc), then take what is already buffered.
      concurrency::streams::streambuf<uint8_t> body = resp.body().streambuf();
      using traits = concurrency::streams::streambuf<uint8_t>::traits;
      // Bytes go straight into `pending` (no staging buffer: one idle watch per
      // resource must cost next to nothing).
      std::string pending;
      while (true) {
        if (cancel != nullptr && cancel->cancelled()) {
          return absl::CancelledError("watch cancelled");
        }
        const auto first = body.bumpc().get();
        if (first == traits::eof()) {
          if (!pending.empty()) on_line(pending);
          return absl::OkStatus();
        }
        pending.push_back(static_cast<char>(first));
        if (const size_t avail = body.in_avail(); avail > 0) {
          const size_t have = pending.size();
          pending.resize(have + avail);
          const size_t n =
              body.getn(reinterpret_cast<uint8_t*>(pending.data() + have), avail).get();
          pending.resize(have + n);
        }
        size_t start = 0;
        for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
          if (nl > start && !on_line(absl::string_view(pending).substr(start, nl - start))) {
            cts.cancel();
            return absl::CancelledError("watch stopped by its consumer");
          }
        }
        pending.erase(0, start);
        // One large event (a relist's worth) must not pin its buffer for the
        // life of the watch.
        if (pending.capacity() > kKeepBuffer && pending.size() < kKeepBuffer / 4) {
          pending.shrink_to_fit();
        }
      }
    } catch (const pplx::task_canceled&) {
      return absl::CancelledError("watch cancelled");
    } catch (const std::exception& e) {
      if (cancel != nullptr && cancel->cancelled()) {
        return absl::CancelledError("watch cancelled");
      }
      return absl::UnavailableError(absl::StrCat("watch ", request.path, ": ", e.what()));
    }
  }

 private:
  http_client_config MakeConfig(absl::Duration timeout, size_t chunk_size) const {
    http_client_config cfg;
    cfg.set_timeout(absl::ToChronoSeconds(timeout));
    cfg.set_validate_certificates(!config_.insecure_skip_tls_verify);
    // The response body streams in chunks of this size.
    cfg.set_chunksize(chunk_size);
    const std::string ca = config_.ca_pem;
    const std::string cert = config_.client_cert_pem;
    const std::string key = config_.client_key_pem;
    cfg.set_ssl_context_callback(
        [ca, cert, key, sessions = sessions_](boost::asio::ssl::context& ctx) {
          sessions->Attach(ctx.native_handle());
          // Exceptions here would abort the handshake; cpprestsdk reports them as
          // http_exception from the request, which Do/Stream turn into a Status.
          if (!ca.empty()) {
            ctx.add_certificate_authority(boost::asio::buffer(ca.data(), ca.size()));
          }
          if (!cert.empty() && !key.empty()) {
            ctx.use_certificate_chain(boost::asio::buffer(cert.data(), cert.size()));
            ctx.use_private_key(boost::asio::buffer(key.data(), key.size()),
                                boost::asio::ssl::context::pem);
          }
        });
    return cfg;
  }

  absl::StatusOr<web::http::http_request> Build(const HttpRequest& request) const {
    web::http::http_request req(request.method);
    web::uri_builder uri(request.path);
    for (const auto& [k, v] : request.query) {
      uri.append_query(k, v, /*do_encoding=*/true);
    }
    req.set_request_uri(uri.to_uri());
    auto& headers = req.headers();
    headers.add("Accept", request.accept);
    headers.add("User-Agent", config_.user_agent);
    if (config_.token_source != nullptr) {
      absl::StatusOr<std::string> token = config_.token_source->Token();
      if (!token.ok()) return token.status();
      headers.add("Authorization", "Bearer " + *token);
    }
    if (!request.body.empty() || request.method == "POST" || request.method == "PUT" ||
        request.method == "PATCH") {
      req.set_body(request.body, request.content_type.empty() ? std::string("application/json")
                                                              : request.content_type);
    }
    return req;
  }

  static void CopyHeaders(const web::http::http_response& resp, HttpResponse* out) {
    for (const auto& [k, v] : resp.headers()) {
      out->headers.emplace_back(absl::AsciiStrToLower(k), v);
    }
  }

  RestConfig config_;
  // Shared by both clients' connections; each SSL_CTX callback holds a
  // reference, so it outlives every connection.
  std::shared_ptr<SessionCache> sessions_ = std::make_shared<SessionCache>();
  http_client client_;
  http_client stream_client_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> NewCppRestTransport(const RestConfig& config) {
  if (config.server.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        config.source.empty() ? "configuration" : config.source, ": no API server address"));
  }
  // With a cluster CA from the config the system bundle is never used (see
  // SSL_CTX_set_default_verify_paths above); the process environment stays as it was.
  if (!config.ca_pem.empty()) cluster_ca_only.store(true, std::memory_order_release);
  try {
    return std::unique_ptr<Transport>(new CppRestTransport(config));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("API server ", config.server, ": ", e.what()));
  }
}

}  // namespace capstan::kube
