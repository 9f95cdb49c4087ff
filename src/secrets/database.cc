#include "capstan/secrets/database.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace capstan::secrets {

std::string ScrubPasswords(std::string message, const std::vector<std::string>& secrets) {
  for (const std::string& s : secrets) {
    if (!s.empty()) absl::StrReplaceAll({{s, "[redacted]"}}, &message);
  }
  return message;
}

DbStepOutcome CheckAdmin(PasswordDatabase& db, const DbConnection& c, const DbCredential& admin) {
  DbStepOutcome out;
  out.step = "connect";
  absl::Status s = db.TryLogin(c, admin);
  if (!s.ok()) {
    out.message =
        ScrubPasswords(absl::StrCat("cannot log in to PostgreSQL at ", c.host, ":", c.port, "/",
                                    c.database, " as admin ", admin.user, ": ", s.message()),
                       {admin.password});
    return out;
  }
  out.ok = true;
  return out;
}

DbStepOutcome EnsurePassword(PasswordDatabase& db, const DbConnection& c, const DbCredential& admin,
                             const DbCredential& target, bool create,
                             const std::string& member_of) {
  DbStepOutcome out;
  const std::vector<std::string> secrets = {admin.password, target.password};
  if (db.TryLogin(c, target).ok()) {
    out.ok = true;
    out.already_done = true;
    return out;
  }
  if (absl::Status s = db.SetPassword(c, admin, target, create, member_of); !s.ok()) {
    out.step = absl::IsUnavailable(s) || absl::IsUnauthenticated(s) ? "connect" : "set";
    out.message = ScrubPasswords(
        out.step == "connect"
            ? absl::StrCat("cannot log in to PostgreSQL at ", c.host, ":", c.port, "/", c.database,
                           " as admin ", admin.user, ": ", s.message())
            : absl::StrCat("setting the password of ", target.user, " as ", admin.user,
                           " failed: ", s.message()),
        secrets);
    return out;
  }
  if (absl::Status s = db.TryLogin(c, target); !s.ok()) {
    out.step = "test";
    out.message = ScrubPasswords(
        absl::StrCat("logging in as ", target.user, " with the new password failed: ", s.message()),
        secrets);
    return out;
  }
  out.ok = true;
  return out;
}

DbStepOutcome SetPasswordBack(PasswordDatabase& db, const DbConnection& c,
                              const DbCredential& admin, const DbCredential& target) {
  DbStepOutcome out;
  if (absl::Status s = db.SetPassword(c, admin, target, /*create=*/false, ""); !s.ok()) {
    out.step = "restore";
    out.message = ScrubPasswords(absl::StrCat("setting the previous password of ", target.user,
                                              " back as ", admin.user, " failed: ", s.message()),
                                 {admin.password, target.password});
    return out;
  }
  out.ok = true;
  return out;
}

}  // namespace capstan::secrets
