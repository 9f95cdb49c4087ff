#include "capstan/api/cron.h"

#include <map>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "capstan/common/status_macros.h"

namespace capstan::api {
namespace {

struct Field {
  const char* name;
  int lo, hi;
  std::map<std::string, int> names;  // upper case
};

const Field kMinute{"minute", 0, 59, {}};
const Field kHour{"hour", 0, 23, {}};
const Field kDom{"day of month", 1, 31, {}};
const Field kMonth{"month",
                   1,
                   12,
                   {{"JAN", 1},
                    {"FEB", 2},
                    {"MAR", 3},
                    {"APR", 4},
                    {"MAY", 5},
                    {"JUN", 6},
                    {"JUL", 7},
                    {"AUG", 8},
                    {"SEP", 9},
                    {"OCT", 10},
                    {"NOV", 11},
                    {"DEC", 12}}};
// 7 is Sunday too; folded to 0 below.
const Field kDow{
    "day of week",
    0,
    7,
    {{"SUN", 0}, {"MON", 1}, {"TUE", 2}, {"WED", 3}, {"THU", 4}, {"FRI", 5}, {"SAT", 6}}};

absl::StatusOr<int> Value(const Field& f, const std::string& s) {
  int v = 0;
  if (auto it = f.names.find(absl::AsciiStrToUpper(s)); it != f.names.end()) {
    v = it->second;
  } else if (s.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(s[0])) ||
             !absl::SimpleAtoi(s, &v)) {
    return absl::InvalidArgumentError(absl::StrCat(f.name, ": \"", s, "\" is not a value"));
  }
  if (v < f.lo || v > f.hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(f.name, ": ", v, " is outside ", f.lo, "-", f.hi));
  }
  return v;
}

// Sets bits [lo..hi] of `out` for one field.
absl::Status ParseField(const Field& f, const std::string& text, std::vector<bool>* out) {
  out->assign(static_cast<size_t>(f.hi + 1), false);
  const std::vector<std::string> items = absl::StrSplit(text, ',');
  for (const std::string& item : items) {
    std::string range = item;
    int step = 1;
    if (size_t slash = item.find('/'); slash != std::string::npos) {
      range = item.substr(0, slash);
      const std::string st = item.substr(slash + 1);
      if (!absl::SimpleAtoi(st, &step) || step < 1 || step > f.hi + 1) {
        return absl::InvalidArgumentError(absl::StrCat(f.name, ": bad step \"", st, "\""));
      }
    }
    int lo = f.lo, hi = f.hi;
    if (range != "*") {
      if (size_t dash = range.find('-'); dash != std::string::npos) {
        ASSIGN_OR_RETURN(lo, Value(f, range.substr(0, dash)));
        ASSIGN_OR_RETURN(hi, Value(f, range.substr(dash + 1)));
        if (hi < lo) {
          return absl::InvalidArgumentError(
              absl::StrCat(f.name, ": range \"", range, "\" runs backwards"));
        }
      } else {
        ASSIGN_OR_RETURN(lo, Value(f, range));
        // "a/n" means a, a+n, ... up to the end of the field (as Vixie cron reads it).
        hi = item.find('/') != std::string::npos ? f.hi : lo;
      }
    }
    for (int v = lo; v <= hi; v += step) (*out)[static_cast<size_t>(v)] = true;
  }
  return absl::OkStatus();
}

template <size_t N>
void Copy(const std::vector<bool>& bits, std::bitset<N>* out) {
  for (size_t i = 0; i < bits.size() && i < N; ++i) (*out)[i] = bits[i];
}

}  // namespace

absl::StatusOr<CronSchedule> ParseCron(const std::string& raw) {
  std::string expr(absl::StripAsciiWhitespace(raw));
  static const std::map<std::string, std::string> kMacros = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"}};
  if (auto it = kMacros.find(expr); it != kMacros.end()) expr = it->second;
  const std::vector<std::string> fields =
      absl::StrSplit(expr, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.size() != 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", raw, "\" has ", fields.size(),
        " fields; a schedule has 5 (minute hour day-of-month month day-of-week) or is a macro "
        "such as @daily"));
  }
  CronSchedule c;
  std::vector<bool> bits;
  RETURN_IF_ERROR(ParseField(kMinute, fields[0], &bits));
  Copy(bits, &c.minutes);
  RETURN_IF_ERROR(ParseField(kHour, fields[1], &bits));
  Copy(bits, &c.hours);
  RETURN_IF_ERROR(ParseField(kDom, fields[2], &bits));
  Copy(bits, &c.days_of_month);
  RETURN_IF_ERROR(ParseField(kMonth, fields[3], &bits));
  Copy(bits, &c.months);
  RETURN_IF_ERROR(ParseField(kDow, fields[4], &bits));
  if (bits[7]) bits[0] = true;  // 7 is Sunday
  Copy(bits, &c.days_of_week);
  c.dom_restricted = fields[2][0] != '*';
  c.dow_restricted = fields[4][0] != '*';
  return c;
}

std::optional<absl::Time> NextCronTime(const CronSchedule& c, const absl::TimeZone& tz,
                                       absl::Time after) {
  const absl::CivilMinute start = absl::ToCivilMinute(after, tz) + 1;
  const absl::CivilDay first(start);
  // Five years hold every day a 5-field schedule can name (29 February included).
  for (absl::CivilDay day = first; day < first + 366 * 5; ++day) {
    if (!c.months[static_cast<size_t>(day.month())]) continue;
    const bool dom = c.days_of_month[static_cast<size_t>(day.day())];
    const int weekday = static_cast<int>(absl::GetWeekday(day));  // Monday = 0 in abseil
    const bool dow = c.days_of_week[static_cast<size_t>((weekday + 1) % 7)];
    const bool match = (c.dom_restricted && c.dow_restricted) ? (dom || dow) : (dom && dow);
    if (!match) continue;
    for (int h = 0; h < 24; ++h) {
      if (!c.hours[static_cast<size_t>(h)]) continue;
      for (int m = 0; m < 60; ++m) {
        if (!c.minutes[static_cast<size_t>(m)]) continue;
        const absl::CivilMinute cm(day.year(), day.month(), day.day(), h, m);
        if (cm < start) continue;
        const absl::Time t = absl::FromCivil(cm, tz);
        if (t > after) return t;
      }
    }
  }
  return std::nullopt;
}

}  // namespace capstan::api
