#include "capstan/pgsql/postgres.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace capstan::pgsql {
namespace {

using secrets::DbConnection;
using secrets::DbCredential;

struct ConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultCloser {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Conn = std::unique_ptr<PGconn, ConnCloser>;
using Result = std::unique_ptr<PGresult, ResultCloser>;

// The CA file for sslrootcert, removed when this goes.
class CaFile {
 public:
  absl::Status Write(const std::string& pem) {
    if (pem.empty()) return absl::OkStatus();
    std::string tmpl = (std::filesystem::temp_directory_path() / "capstan-ca-XXXXXX").string();
    const int fd = mkstemp(tmpl.data());
    if (fd < 0) return absl::InternalError("cannot create a file for the CA");
    path_ = tmpl;
    const bool ok = write(fd, pem.data(), pem.size()) == static_cast<ssize_t>(pem.size());
    close(fd);
    if (!ok) return absl::InternalError("cannot write the CA file");
    return absl::OkStatus();
  }
  const std::string& path() const { return path_; }
  ~CaFile() {
    if (!path_.empty()) std::remove(path_.c_str());
  }

 private:
  std::string path_;
};

// libpq's message on one line ("ERROR:  x\nDETAIL:  y" -> "x; DETAIL:  y"), for
// conditions and Events.
std::string OneLine(const char* message) {
  std::string s(absl::StripAsciiWhitespace(message));
  if (absl::StartsWith(s, "ERROR:  ")) s.erase(0, 8);
  absl::StrReplaceAll({{"\n\t", " "}, {"\n", "; "}}, &s);
  return s;
}

std::string ErrorOf(PGconn* c) {
  return OneLine(c != nullptr ? PQerrorMessage(c) : "out of memory");
}

absl::StatusOr<Conn> Connect(const DbConnection& c, const DbCredential& login, CaFile& ca) {
  if (absl::Status s = ca.Write(c.ca_pem); !s.ok()) return s;
  const std::string port = absl::StrCat(c.port);
  std::vector<const char*> keys = {"host",     "port",    "dbname",          "user",
                                   "password", "sslmode", "connect_timeout", "application_name"};
  std::vector<const char*> values = {c.host.c_str(),
                                     port.c_str(),
                                     c.database.c_str(),
                                     login.user.c_str(),
                                     login.password.c_str(),
                                     c.ssl_mode.c_str(),
                                     "5",
                                     "capstan"};
  if (!ca.path().empty()) {
    keys.push_back("sslrootcert");
    values.push_back(ca.path().c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  Conn conn(PQconnectdbParams(keys.data(), values.data(), 0));
  if (conn == nullptr || PQstatus(conn.get()) != CONNECTION_OK) {
    const std::string why = ErrorOf(conn.get());
    // The server answered and refused the credential, or never answered.
    const bool refused = absl::StrContains(why, "authentication failed") ||
                         absl::StrContains(why, "does not exist") ||
                         absl::StrContains(why, "not permitted to log in");
    return refused ? absl::UnauthenticatedError(why) : absl::UnavailableError(why);
  }
  return conn;
}

absl::Status Exec(PGconn* c, const std::string& sql) {
  Result r(PQexec(c, sql.c_str()));
  const ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    return absl::PermissionDeniedError(r ? OneLine(PQresultErrorMessage(r.get())) : ErrorOf(c));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Identifier(PGconn* c, const std::string& name) {
  char* q = PQescapeIdentifier(c, name.data(), name.size());
  if (q == nullptr) return absl::InvalidArgumentError(ErrorOf(c));
  std::string out(q);
  PQfreemem(q);
  return out;
}

}  // namespace

absl::Status PostgresDatabase::TryLogin(const DbConnection& c, const DbCredential& login) {
  CaFile ca;
  absl::StatusOr<Conn> conn = Connect(c, login, ca);
  return conn.status();
}

absl::Status PostgresDatabase::SetPassword(const DbConnection& c, const DbCredential& admin,
                                           const DbCredential& target, bool create,
                                           const std::string& member_of) {
  CaFile ca;
  absl::StatusOr<Conn> conn_or = Connect(c, admin, ca);
  if (!conn_or.ok()) return conn_or.status();
  PGconn* conn = conn_or->get();
  // The verifier, computed here: the server never sees the password itself.
  char* verifier =
      PQencryptPasswordConn(conn, target.password.c_str(), target.user.c_str(), "scram-sha-256");
  if (verifier == nullptr) {
    return absl::InternalError(absl::StrCat("cannot compute the SCRAM verifier: ", ErrorOf(conn)));
  }
  char* literal = PQescapeLiteral(conn, verifier, std::strlen(verifier));
  PQfreemem(verifier);
  if (literal == nullptr) return absl::InternalError(ErrorOf(conn));
  const std::string password_literal(literal);
  PQfreemem(literal);

  absl::StatusOr<std::string> role = Identifier(conn, target.user);
  if (!role.ok()) return role.status();
  // Does the role exist? (A parameter: no quoting needed.)
  const char* params[] = {target.user.c_str()};
  Result exists(PQexecParams(conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", 1,
                             nullptr, params, nullptr, nullptr, 0));
  if (!exists || PQresultStatus(exists.get()) != PGRES_TUPLES_OK) {
    return absl::PermissionDeniedError(exists ? OneLine(PQresultErrorMessage(exists.get()))
                                              : ErrorOf(conn));
  }
  const bool found = PQntuples(exists.get()) > 0;
  if (!found && !create) {
    return absl::FailedPreconditionError(absl::StrCat("role ", target.user, " does not exist"));
  }
  if (absl::Status s = Exec(conn, "BEGIN"); !s.ok()) return s;
  absl::Status s = Exec(conn, absl::StrCat(found ? "ALTER ROLE " : "CREATE ROLE ", *role,
                                           " WITH LOGIN PASSWORD ", password_literal));
  if (s.ok() && !member_of.empty()) {
    absl::StatusOr<std::string> group = Identifier(conn, member_of);
    s = group.ok() ? Exec(conn, absl::StrCat("GRANT ", *group, " TO ", *role)) : group.status();
  }
  if (!s.ok()) {
    (void)Exec(conn, "ROLLBACK");
    return s;
  }
  return Exec(conn, "COMMIT");
}

}  // namespace capstan::pgsql
