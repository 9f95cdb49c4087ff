#pragma once

// The database side of a rotation with spec.target.postgresql, behind a small
// interface: the controller performs these steps as effects of a plan
// (rotation.h), the libpq implementation lives in its own layer
// (capstan/pgsql/postgres.h), unit tests use a fake.
//
// Every step is idempotent and detects when it was already done (a process
// killed after the database changed and before the Secret did resumes by
// logging in with the pending password first: when that works, the set step
// is not repeated).
//
// SECURITY: passwords only ever travel in DbCredential; implementations send
// them to the server as a SCRAM-SHA-256 verifier computed on the client, never
// as plaintext in a statement. Messages returned here never contain one
// (ScrubPasswords removes any that a server or library echoed).

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace capstan::secrets {

struct DbConnection {
  std::string host;
  int port = 5432;
  std::string database;
  std::string ssl_mode;
  std::string ca_pem;  // empty: libpq's default trust
};

struct DbCredential {
  std::string user;
  std::string password;
};

class PasswordDatabase {
 public:
  virtual ~PasswordDatabase() = default;
  // Logs in as `login` and disconnects: OK when the server accepted it.
  virtual absl::Status TryLogin(const DbConnection& c, const DbCredential& login) = 0;
  // As `admin`, in one transaction: creates `target.user` (LOGIN) when `create` and
  // missing (FailedPrecondition when missing and not `create`), sets its password, and
  // makes it a member of `member_of` when not empty.
  virtual absl::Status SetPassword(const DbConnection& c, const DbCredential& admin,
                                   const DbCredential& target, bool create,
                                   const std::string& member_of) = 0;
};

// The outcome of one database step, named for conditions and Events:
//   connect  the admin credential could not log in (unreachable, wrong password)
//   set      creating/altering the role failed (e.g. the admin lacks CREATEROLE)
//   test     the new password did not log in after it was set
//   restore  setting the previous password back (SingleUser, after a failed test) failed
struct DbStepOutcome {
  bool ok = false;
  bool already_done = false;  // the new password already worked: nothing was changed
  std::string step;
  std::string message;  // names users and steps, never a password
};

// Logs in as the admin (before a rotation writes anything).
DbStepOutcome CheckAdmin(PasswordDatabase& db, const DbConnection& c, const DbCredential& admin);

// Makes the database accept `target`: when it already logs in, done; otherwise set it as
// the admin, then test it by logging in.
DbStepOutcome EnsurePassword(PasswordDatabase& db, const DbConnection& c, const DbCredential& admin,
                             const DbCredential& target, bool create, const std::string& member_of);

// Sets `target` as the admin and does not test it: a SingleUser rotation whose new
// password failed its test sets the previous one back, so whatever logged in with it
// before (another database, a pooler) does again.
DbStepOutcome SetPasswordBack(PasswordDatabase& db, const DbConnection& c,
                              const DbCredential& admin, const DbCredential& target);

// `message` with every occurrence of each (non-empty) secret replaced by "[redacted]".
std::string ScrubPasswords(std::string message, const std::vector<std::string>& secrets);

}  // namespace capstan::secrets
