#include "capstan/analysis/http.h"

#include <cstdlib>
#include <exception>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cpprest/http_client.h"
#include "openssl/ssl.h"
#include "openssl/x509.h"

namespace capstan::analysis {

absl::StatusOr<std::pair<std::string, std::string>> SplitUrl(const std::string& url) {
  if (!absl::StartsWith(url, "http://") && !absl::StartsWith(url, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", url, "\" is not an http:// or https:// URL"));
  }
  const size_t scheme_end = url.find("://") + 3;
  const size_t path = url.find_first_of("/?#", scheme_end);
  std::string base = path == std::string::npos ? url : url.substr(0, path);
  std::string rest = path == std::string::npos ? "/" : url.substr(path);
  if (base.size() == scheme_end) {
    return absl::InvalidArgumentError(absl::StrCat("\"", url, "\" names no host"));
  }
  if (!rest.empty() && rest[0] != '/') rest = "/" + rest;
  if (!web::uri::validate(url)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", url, "\" is not a valid URL"));
  }
  return std::make_pair(std::move(base), std::move(rest));
}

struct HttpPool::Client {
  web::http::client::http_client http;
  Client(const std::string& base, const web::http::client::http_client_config& cfg)
      : http(base, cfg) {}
};

HttpPool::HttpPool() = default;
HttpPool::~HttpPool() = default;

std::shared_ptr<HttpPool::Client> HttpPool::ClientFor(const HttpCall& call) {
  const std::string key =
      absl::StrCat(call.base, "#", absl::ToInt64Milliseconds(call.timeout), "#", call.ca_pem);
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(key);
  if (it != clients_.end()) return it->second;
  web::http::client::http_client_config cfg;
  cfg.set_timeout(absl::ToChronoMilliseconds(call.timeout));
  const std::string ca = call.ca_pem;
  cfg.set_ssl_context_callback([ca](boost::asio::ssl::context& ctx) {
    // Exceptions here (a CA that does not parse) fail the handshake; cpprestsdk reports
    // them from the request as an http_exception, which Send turns into a Status.
    if (!ca.empty()) {
      ctx.add_certificate_authority(boost::asio::buffer(ca.data(), ca.size()));
    } else {
      // As OpenSSL's default paths: $SSL_CERT_FILE and $SSL_CERT_DIR override the
      // compiled-in ones (the FROM-scratch image has only /etc/ssl/certs/ca-certificates.crt
      // and sets SSL_CERT_FILE to it; the compiled-in /usr/lib/ssl is not there).
      const char* file = std::getenv(X509_get_default_cert_file_env());
      const char* dir = std::getenv(X509_get_default_cert_dir_env());
      SSL_CTX_load_verify_locations(ctx.native_handle(),
                                    file != nullptr ? file : X509_get_default_cert_file(),
                                    dir != nullptr ? dir : X509_get_default_cert_dir());
    }
  });
  auto c = std::make_shared<Client>(call.base, cfg);
  clients_[key] = c;
  return c;
}

absl::StatusOr<HttpAnswer> HttpPool::Send(const HttpCall& call) {
  try {
    std::shared_ptr<Client> c = ClientFor(call);
    web::http::http_request req(call.method);
    req.set_request_uri(call.path_and_query);
    for (const auto& [k, v] : call.headers) req.headers().add(k, v);
    if (!call.body.empty() || call.method == "POST" || call.method == "PUT") {
      req.set_body(call.body, call.content_type);
    }
    // Blocking in the caller's (worker) thread, never inside a continuation.
    web::http::http_response resp = c->http.request(req).get();
    HttpAnswer out;
    out.status = resp.status_code();
    out.body = resp.extract_utf8string(true).get();
    return out;
  } catch (const web::http::http_exception& e) {
    const std::string what = e.what();
    if (what.find("timed out") != std::string::npos || e.error_code() == std::errc::timed_out) {
      return absl::DeadlineExceededError(
          absl::StrCat(call.what, " did not answer within ", absl::FormatDuration(call.timeout)));
    }
    return absl::UnavailableError(absl::StrCat(call.what, ": ", what));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(call.what, ": ", e.what()));
  }
}

}  // namespace capstan::analysis
