// Cron schedules: parsing (one row per error) and the next firing time as a
// table, time zones and daylight saving changes included; NextRotation with
// spec.schedule.

#include <string>
#include <vector>

#include "capstan/api/cron.h"
#include "capstan/api/time_zone.h"
#include "capstan/secrets/rotation.h"
#include "capstan/secrets/secret_rotation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::secrets {
namespace {

using ::testing::HasSubstr;

absl::Time At(const std::string& rfc3339) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) << rfc3339 << err;
  return t;
}

TEST(ScheduleTest, NextCronTime) {
  struct Case {
    const char* name;
    const char* expr;
    const char* zone;
    const char* after;
    const char* want;  // "" for never
  };
  const std::vector<Case> cases = {
      {"every minute", "* * * * *", "UTC", "2026-03-10T10:15:30Z", "2026-03-10T10:16:00Z"},
      {"strictly after", "15 10 * * *", "UTC", "2026-03-10T10:15:00Z", "2026-03-11T10:15:00Z"},
      {"daily at 03:00", "0 3 * * *", "UTC", "2026-03-10T10:00:00Z", "2026-03-11T03:00:00Z"},
      {"Mondays 03:00 (2026-03-10 is a Tuesday)", "0 3 * * 1", "UTC", "2026-03-10T00:00:00Z",
       "2026-03-16T03:00:00Z"},
      {"Sunday as 7", "0 0 * * 7", "UTC", "2026-03-10T00:00:00Z", "2026-03-15T00:00:00Z"},
      {"day names", "0 0 * * SAT,SUN", "UTC", "2026-03-10T00:00:00Z", "2026-03-14T00:00:00Z"},
      {"steps", "*/20 * * * *", "UTC", "2026-03-10T10:41:00Z", "2026-03-10T11:00:00Z"},
      {"range step", "10-50/20 * * * *", "UTC", "2026-03-10T10:31:00Z", "2026-03-10T10:50:00Z"},
      {"a/n runs to the end", "45/10 * * * *", "UTC", "2026-03-10T10:46:00Z",
       "2026-03-10T10:55:00Z"},
      {"lists", "0 6,18 * * *", "UTC", "2026-03-10T07:00:00Z", "2026-03-10T18:00:00Z"},
      {"monthly on the 1st", "@monthly", "UTC", "2026-03-10T00:00:00Z", "2026-04-01T00:00:00Z"},
      {"month names", "0 0 1 JAN,JUL *", "UTC", "2026-03-10T00:00:00Z", "2026-07-01T00:00:00Z"},
      {"31st skips short months", "0 0 31 * *", "UTC", "2026-03-31T00:00:00Z",
       "2026-05-31T00:00:00Z"},
      {"29 February: the next leap year", "0 0 29 2 *", "UTC", "2026-03-10T00:00:00Z",
       "2028-02-29T00:00:00Z"},
      {"never", "0 0 30 2 *", "UTC", "2026-03-10T00:00:00Z", ""},
      {"day of month OR day of week when both are set", "0 0 13 * 5", "UTC", "2026-03-10T00:00:00Z",
       "2026-03-13T00:00:00Z"},
      {"... the Friday comes first", "0 0 20 * 5", "UTC", "2026-03-10T00:00:00Z",
       "2026-03-13T00:00:00Z"},
      {"day of week AND '*' day of month", "0 0 * 3 5", "UTC", "2026-03-28T00:00:00Z",
       "2027-03-05T00:00:00Z"},
      {"in Berlin (UTC+1 in winter)", "0 3 * * *", "Europe/Berlin", "2026-01-10T12:00:00Z",
       "2026-01-11T02:00:00Z"},
      {"in New York (UTC-4 in summer)", "30 9 * * 1-5", "America/New_York", "2026-07-03T14:00:00Z",
       "2026-07-06T13:30:00Z"},
      {"DST gap: 02:30 does not exist on 2026-03-29 in Berlin, runs at the change (03:00 CEST)",
       "30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"},
      {"DST repeat: 02:30 happens twice on 2026-10-25 in Berlin, runs at the first", "30 2 * * *",
       "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"},
      {"... and not again at the second", "30 2 * * *", "Europe/Berlin", "2026-10-25T00:30:00Z",
       "2026-10-26T01:30:00Z"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<CronSchedule> cron = ParseCron(c.expr);
    ASSERT_TRUE(cron.ok()) << cron.status();
    absl::TimeZone tz;
    ASSERT_TRUE(api::LoadIanaTimeZone(c.zone, &tz));
    const std::optional<absl::Time> next = NextCronTime(*cron, tz, At(c.after));
    if (std::string(c.want).empty()) {
      EXPECT_FALSE(next.has_value());
    } else {
      ASSERT_TRUE(next.has_value());
      EXPECT_EQ(*next, At(c.want)) << absl::FormatTime(*next);
    }
  }
}

TEST(ScheduleTest, ParseErrorsNameTheField) {
  struct Case {
    const char* expr;
    const char* want;
  };
  const std::vector<Case> cases = {
      {"* * * *", "has 4 fields"},
      {"* * * * * *", "has 6 fields"},
      {"60 * * * *", "minute: 60 is outside 0-59"},
      {"* 24 * * *", "hour: 24"},
      {"* * 0 * *", "day of month: 0"},
      {"* * * 13 *", "month: 13"},
      {"* * * * 8", "day of week: 8"},
      {"* * * FOO *", "month: \"FOO\" is not a value"},
      {"*/0 * * * *", "minute: bad step"},
      {"30-10 * * * *", "runs backwards"},
      {"@often", "has 1 fields"},
      {"-1 * * * *", "is not a value"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expr);
    absl::StatusOr<CronSchedule> cron = ParseCron(c.expr);
    ASSERT_FALSE(cron.ok());
    EXPECT_THAT(std::string(cron.status().message()), HasSubstr(c.want));
  }
}

nlohmann::json WithSchedule(const std::string& schedule, const std::string& zone) {
  nlohmann::json o = {{"metadata", {{"name", "jwt"}, {"namespace", "shop"}}},
                      {"spec",
                       {{"secretName", "jwt-keys"},
                        {"schedule", schedule},
                        {"keys", {{{"name", "k"}, {"uuid", nlohmann::json::object()}}}}}}};
  if (!zone.empty()) o["spec"]["timeZone"] = zone;
  return o;
}

TEST(ScheduleTest, SpecScheduleAndTimeZone) {
  absl::StatusOr<SecretRotation> sr =
      ParseSecretRotation(WithSchedule("0 3 * * 1", "Europe/Berlin"));
  ASSERT_TRUE(sr.ok()) << sr.status();
  EXPECT_TRUE(ValidateSecretRotation(*sr).empty());
  // Due the first Monday 03:00 Berlin time after the last attempt (a Tuesday).
  const std::map<std::string, std::string> ann = {{kAnnLastAttempt, "2026-03-10T08:00:00Z"}};
  EXPECT_EQ(*NextRotation(*sr, ann), At("2026-03-16T02:00:00Z"));
  // UTC when unset.
  sr = ParseSecretRotation(WithSchedule("0 3 * * 1", ""));
  ASSERT_TRUE(sr.ok());
  EXPECT_EQ(*NextRotation(*sr, ann), At("2026-03-16T03:00:00Z"));

  struct Bad {
    std::string schedule, zone, want;
  };
  const std::vector<Bad> bad = {
      {"0 3 * * 1", "Mars/Olympus_Mons", "not an IANA time zone name this system knows"},
      {"0 3 * * 1", "../../../../etc/passwd", "not an IANA time zone"},
      {"0 3 * * 1", "/usr/share/zoneinfo/UTC", "not an IANA time zone"},
      {"0 3 * * 1", "localtime", "not an IANA time zone"},
      {"0 3 * *", "", "spec.schedule: \"0 3 * *\" has 4 fields"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.zone + " " + b.schedule);
    absl::StatusOr<SecretRotation> r = ParseSecretRotation(WithSchedule(b.schedule, b.zone));
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(b.want));
  }
  nlohmann::json both = WithSchedule("@daily", "");
  both["spec"]["interval"] = "24h";
  EXPECT_THAT(std::string(ParseSecretRotation(both).status().message()),
              HasSubstr("set one of them, not both"));
  sr = ParseSecretRotation(WithSchedule("0 0 30 2 *", ""));
  ASSERT_TRUE(sr.ok());
  EXPECT_THAT(ValidateSecretRotation(*sr), testing::Contains(HasSubstr("never fires")));
}

TEST(ScheduleTest, ScheduledRotationIsDueAtTheCronTimeAndMissedRunsRotateOnce) {
  SecretRotation sr = *ParseSecretRotation(WithSchedule("0 3 * * *", "UTC"));
  sr.uid = "uid-1";
  RotationInput in;
  in.rotation = &sr;
  in.secret.exists = true;
  in.secret.data_keys = {"k"};
  in.secret.annotations = {
      {kAnnState, "Idle"}, {kAnnVersion, "1"}, {kAnnLastAttempt, "2026-03-10T08:00:00Z"}};
  in.now = At("2026-03-11T02:59:00Z");
  RotationPlan p = PlanRotation(in);
  EXPECT_EQ(p.action, Action::kNone);
  EXPECT_EQ(p.requeue_after, absl::Minutes(1));
  in.now = At("2026-03-11T03:00:00Z");
  EXPECT_EQ(PlanRotation(in).action, Action::kWritePending);
  // Down for three days: one rotation, and the next is the following 03:00.
  in.now = At("2026-03-14T10:00:00Z");
  p = PlanRotation(in);
  ASSERT_EQ(p.action, Action::kWritePending);
  EXPECT_EQ(*NextRotation(sr, ApplyAnnotations(in.secret.annotations, p.change)),
            At("2026-03-15T03:00:00Z"));
}

}  // namespace
}  // namespace capstan::secrets
