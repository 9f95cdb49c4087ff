// The cpprestsdk edge: the only file that knows about pplx, asio and
// std::chrono. Two long-lived http_clients per API server: one for ordinary
// requests (RestConfig::timeout) and one for watch streams, whose requests
// stay open for minutes. cpprestsdk exceptions are caught here and become
// absl::Status; nothing above sees them.

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <vector>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "capstan/kube/transport.h"
#include "cpprest/http_client.h"
#include "cpprest/uri_builder.h"
#include "capstan/common/log.h"

namespace capstan::kube {
namespace {

using web::http::client::http_client;
using web::http::client::http_client_config;

// Watches are closed by the server after WatchOptions::timeout (minutes); a
// client-side limit only catches a dead connection that sends nothing at all.
constexpr std::chrono::seconds kStreamTimeout{15 * 60};

class CppRestTransport final : public Transport {
 public:
  explicit CppRestTransport(RestConfig config)
      : config_(std::move(config)),
        client_(config_.server, MakeConfig(config_.timeout)),
        stream_client_(config_.server, MakeConfig(absl::FromChrono(kStreamTimeout))) {}

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
                      const std::function<bool(absl::string_view line)>& on_line,
                      int* status_code, Cancellation* cancel) override {
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
      std::string pending;
      std::vector<uint8_t> chunk(64 * 1024);
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
        const size_t avail = body.in_avail();
        if (avail > 0) {
          const size_t n = body.getn(chunk.data(), std::min(avail, chunk.size())).get();
          pending.append(reinterpret_cast<const char*>(chunk.data()), n);
        }
        size_t start = 0;
        for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
          if (nl > start && !on_line(absl::string_view(pending).substr(start, nl - start))) {
            cts.cancel();
            return absl::CancelledError("watch stopped by its consumer");
          }
        }
        pending.erase(0, start);
      }
    } catch (const pplx::task_canceled&) {
      return absl::CancelledError("watch cancelled");
    } catch (const std::exception& e) {
      if (cancel != nullptr && cancel->cancelled()) {
        return absl::CancelledError("watch cancelled");
      }
      return absl::UnavailableError(
          absl::StrCat("watch ", request.path, ": ", e.what()));
    }
  }

 private:
  http_client_config MakeConfig(absl::Duration timeout) const {
    http_client_config cfg;
    cfg.set_timeout(absl::ToChronoSeconds(timeout));
    cfg.set_validate_certificates(!config_.insecure_skip_tls_verify);
    // Keep the response body streaming in modest chunks.
    cfg.set_chunksize(16 * 1024);
    const std::string ca = config_.ca_pem;
    const std::string cert = config_.client_cert_pem;
    const std::string key = config_.client_key_pem;
    cfg.set_ssl_context_callback([ca, cert, key](boost::asio::ssl::context& ctx) {
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
  http_client client_;
  http_client stream_client_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> NewCppRestTransport(const RestConfig& config) {
  if (config.server.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.source.empty() ? "configuration" : config.source,
                     ": no API server address"));
  }
  if (!config.ca_pem.empty()) {
    // cpprestsdk calls SSL_CTX_set_default_verify_paths() for every connection,
    // which parses the whole system CA bundle (~1-2 MB of heap per connection,
    // and we keep one connection per watch). With a cluster CA from the config
    // the system bundle is never used, so point OpenSSL's default file at
    // nothing. Only the API server is ever contacted over TLS by this process.
    setenv("SSL_CERT_FILE", "/nonexistent/capstan-uses-the-cluster-ca", /*overwrite=*/1);
  }
  try {
    return std::unique_ptr<Transport>(new CppRestTransport(config));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("API server ", config.server, ": ", e.what()));
  }
}

}  // namespace capstan::kube
