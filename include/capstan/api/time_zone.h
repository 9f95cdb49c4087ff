#pragma once

// Time zone names from outside (Environment freeze windows) are IANA names, never
// paths: abseil opens <zoneinfo dir>/<name>, so "../../../proc/self/environ" or an
// absolute path would be read as a zone file.

#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace capstan::api {

// True for a name shaped like an IANA time zone ("Europe/Berlin", "Etc/GMT+5",
// "America/Port-au-Prince", "UTC"): '/'-separated parts of letters, digits, '_', '-'
// and '+', each starting with a letter, at most 64 characters in all. No leading '/',
// no "." or ".." part, and not "localtime" (the node's own zone, not a name).
bool IsIanaTimeZoneName(std::string_view name);

// absl::LoadTimeZone for IANA-shaped names only; false for anything else.
bool LoadIanaTimeZone(const std::string& name, absl::TimeZone* tz);

}  // namespace capstan::api
