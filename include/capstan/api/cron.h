#pragma once

// Cron schedules for SecretRotation spec.schedule (an alternative to interval),
// evaluated in an IANA time zone (spec.timeZone, loaded through
// LoadIanaTimeZone: a name, never a path).
//
// Five fields, as crontab(5): minute (0-59), hour (0-23), day of month (1-31),
// month (1-12 or JAN-DEC), day of week (0-7 or SUN-SAT; 0 and 7 are Sunday).
// Each field is '*', a number, a range a-b, a step (*/n, a-b/n, a/n) or a
// comma-separated list of those. When both day fields are restricted (neither
// starts with '*'), a day matches if either matches (Vixie cron). Macros:
// @yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly.
//
// Local times that do not exist (a DST gap) fire at the transition (02:30 in a
// spring-forward gap fires at 03:00 local, absl::FromCivil); repeated local times
// (fall back) fire once, at the first.

#include <bitset>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace capstan::api {

struct CronSchedule {
  std::bitset<60> minutes;
  std::bitset<24> hours;
  std::bitset<32> days_of_month;  // 1..31
  std::bitset<13> months;         // 1..12
  std::bitset<7> days_of_week;    // 0 (Sunday)..6
  bool dom_restricted = false;    // the field did not start with '*'
  bool dow_restricted = false;
};

// Parses a 5-field expression or a macro; the error names the field.
absl::StatusOr<CronSchedule> ParseCron(const std::string& expr);

// The first time strictly after `after` that the schedule fires, in `tz`;
// nullopt when it fires never within five years of `after` (e.g. "0 0 30 2 *").
std::optional<absl::Time> NextCronTime(const CronSchedule& cron, const absl::TimeZone& tz,
                                       absl::Time after);

}  // namespace capstan::api
