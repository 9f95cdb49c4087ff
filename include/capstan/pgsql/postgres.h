#pragma once

// secrets::PasswordDatabase on Debian's libpq: the SecretRotation controller's
// client for spec.target.postgresql.
//
// Passwords reach the server only as the connection's authentication (SCRAM or
// md5 per pg_hba.conf) and as SCRAM-SHA-256 verifiers computed on the client with
// PQencryptPasswordConn: `ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$4096:...'`, so a
// server logging every statement (log_statement = all) logs no password.
// Identifiers are quoted with PQescapeIdentifier, the verifier with PQescapeLiteral.
// A CA from a Secret is written to a private temporary file for sslrootcert and
// removed after the connection. Connections time out after 5 s.

#include <string>

#include "capstan/secrets/database.h"

namespace capstan::pgsql {

class PostgresDatabase final : public secrets::PasswordDatabase {
 public:
  absl::Status TryLogin(const secrets::DbConnection& c,
                        const secrets::DbCredential& login) override;
  absl::Status SetPassword(const secrets::DbConnection& c, const secrets::DbCredential& admin,
                           const secrets::DbCredential& target, bool create,
                           const std::string& member_of) override;
};

}  // namespace capstan::pgsql
