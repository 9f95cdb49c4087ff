#include "capstan/api/time_zone.h"

#include "absl/strings/ascii.h"

namespace capstan::api {

bool IsIanaTimeZoneName(std::string_view name) {
  if (name.empty() || name.size() > 64 || name == "localtime") return false;
  bool part_start = true;
  for (char c : name) {
    if (c == '/') {
      if (part_start) return false;  // leading '/' or "//"
      part_start = true;
      continue;
    }
    const unsigned char u = static_cast<unsigned char>(c);
    if (part_start) {
      if (!absl::ascii_isalpha(u)) return false;  // also refuses "." and ".."
      part_start = false;
      continue;
    }
    if (!absl::ascii_isalnum(u) && c != '_' && c != '-' && c != '+') return false;
  }
  return !part_start;  // no trailing '/'
}

bool LoadIanaTimeZone(const std::string& name, absl::TimeZone* tz) {
  return IsIanaTimeZoneName(name) && absl::LoadTimeZone(name, tz);
}

}  // namespace capstan::api
