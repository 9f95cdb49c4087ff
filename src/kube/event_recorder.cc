#include "capstan/kube/event_recorder.h"

#include <algorithm>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "capstan/common/log.h"
#include "capstan/common/metrics.h"
#include "capstan/kube/leader_election.h"
#include "capstan/kube/micro_time.h"
#include "capstan/kube/resource.h"
#include "prometheus/counter.h"

namespace capstan::kube {
namespace {

// Event names are "<regarding name>.<16 hex>" and must stay a valid object
// name (253 bytes): 253 - 17 = 236 bytes of the regarding name.
constexpr size_t kMaxNamePrefix = 236;
// Kubernetes names and uids are short; anything longer is not a real reference.
constexpr size_t kMaxRefField = 253;
constexpr size_t kMaxReportingInstance = 128;
// Cluster-scoped objects' Events live here, like client-go's.
constexpr char kClusterScopedEventNamespace[] = "default";

std::string StringAt(const Object& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

// Length of the valid UTF-8 sequence at s[i], or 0 (Unicode table 3-7: no
// overlong forms, no surrogates, nothing above U+10FFFF).
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (c < 0x80) {
    return 1;
  } else if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c == 0xE0) {
    len = 3;
    lo = 0xA0;
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    len = 3;
  } else if (c == 0xED) {
    len = 3;
    hi = 0x9F;
  } else if (c == 0xF0) {
    len = 4;
    lo = 0x90;
  } else if (c >= 0xF1 && c <= 0xF3) {
    len = 4;
  } else if (c == 0xF4) {
    len = 4;
    hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return len;
}

}  // namespace

std::string TruncateUtf8(absl::string_view s, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes));
  size_t i = 0;
  while (i < s.size()) {
    const size_t len = Utf8SequenceLength(s, i);
    const size_t out_len = len == 0 ? 1 : len;
    if (out.size() + out_len > max_bytes) break;
    if (len == 0) {
      out.push_back('?');
      i += 1;
    } else {
      out.append(s.data() + i, len);
      i += len;
    }
  }
  return out;
}

EventRecorder::EventRecorder(Client& client, EventRecorderOptions options, const Clock& clock)
    : client_(client),
      options_(std::move(options)),
      clock_(clock),
      emitted_(Metrics::Get().events->Add({{"result", "emitted"}})),
      series_bumps_(Metrics::Get().events->Add({{"result", "series"}})),
      dropped_(Metrics::Get().events->Add({{"result", "dropped"}})),
      failed_(Metrics::Get().events->Add({{"result", "failed"}})) {
  if (options_.reporting_instance.empty()) options_.reporting_instance = DefaultIdentity();
  options_.reporting_instance = TruncateUtf8(options_.reporting_instance, kMaxReportingInstance);
  options_.reporting_controller = TruncateUtf8(options_.reporting_controller, kMaxRefField);
  options_.max_attempts = std::max(1, options_.max_attempts);
  thread_ = std::thread([this] { Run(); });
}

EventRecorder::~EventRecorder() {
  if (!Flush(options_.flush_timeout)) {
    spdlog::warn("event recorder: writes still pending after {}; dropping them",
                 options_.flush_timeout);
  }
  size_t left = 0;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    left = queue_.size();
    queue_.clear();
  }
  dropped_.Increment(static_cast<double>(left));
  thread_.join();
}

void EventRecorder::Record(const Object& regarding, absl::string_view type,
                           absl::string_view reason, absl::string_view action,
                           absl::string_view note) {
  if (type != kEventTypeNormal && type != kEventTypeWarning) {
    spdlog::warn("event recorder: dropping event with invalid type=\"{}\" reason={}",
                 TruncateUtf8(type, 32), TruncateUtf8(reason, kMaxEventReasonBytes));
    dropped_.Increment();
    return;
  }
  static const Object* const kNoMetadata = new Object(Object::object());
  const Object* md = kNoMetadata;
  if (regarding.is_object()) {
    if (auto it = regarding.find("metadata"); it != regarding.end()) md = &*it;
  }
  const std::string api_version = TruncateUtf8(StringAt(regarding, "apiVersion"), kMaxRefField);
  const std::string kind = TruncateUtf8(StringAt(regarding, "kind"), kMaxRefField);
  const std::string name = TruncateUtf8(StringAt(*md, "name"), kMaxRefField);
  const std::string ns = TruncateUtf8(StringAt(*md, "namespace"), kMaxRefField);
  const std::string uid = TruncateUtf8(StringAt(*md, "uid"), kMaxRefField);
  const std::string rv = TruncateUtf8(StringAt(*md, "resourceVersion"), kMaxRefField);
  const std::string reason_t = TruncateUtf8(reason, kMaxEventReasonBytes);
  const std::string action_t = TruncateUtf8(action, kMaxEventReasonBytes);
  const std::string note_t = TruncateUtf8(note, kMaxEventNoteBytes);

  // The spam filter counts per object; an object without a uid (a bare
  // reference) is known by its coordinates.
  const std::string object_key =
      !uid.empty() ? uid : absl::StrCat(api_version, "/", kind, "/", ns, "/", name);
  // \x1f (unit separator) cannot appear in a uid, type, reason or action.
  std::string series_key =
      absl::StrCat(object_key, "\x1f", type, "\x1f", reason_t, "\x1f", action_t, "\x1f", note_t);

  const absl::Time now = clock_.Now();
  enum class Outcome { kEmitted, kSeries, kQueueFull, kRateLimited, kStopping };
  Outcome outcome;
  {
    absl::MutexLock lock(&mu_);
    auto it = series_.find(series_key);
    const bool in_series =
        it != series_.end() && now - it->second->last_observed <= options_.series_window;
    // A bump for a series whose patch is still queued rides along with it.
    const bool needs_slot = !(in_series && it->second->patch_queued);
    if (stop_) {
      outcome = Outcome::kStopping;
    } else if (needs_slot && queue_.size() >= options_.queue_capacity) {
      outcome = Outcome::kQueueFull;
    } else if (!TakeTokenLocked(object_key, now)) {
      outcome = Outcome::kRateLimited;
    } else if (in_series) {
      Series& s = *it->second;
      ++s.count;
      s.last_observed = now;
      if (!s.patch_queued) {
        s.patch_queued = true;
        queue_.push_back(Write{true, it->second});
      }
      outcome = Outcome::kSeries;
    } else {
      Object ref = Object::object();
      if (!api_version.empty()) ref["apiVersion"] = api_version;
      if (!kind.empty()) ref["kind"] = kind;
      if (!name.empty()) ref["name"] = name;
      if (!ns.empty()) ref["namespace"] = ns;
      if (!uid.empty()) ref["uid"] = uid;
      if (!rv.empty()) ref["resourceVersion"] = rv;
      const std::string event_name =
          absl::StrFormat("%s.%016x", TruncateUtf8(name.empty() ? "capstan" : name, kMaxNamePrefix),
                          absl::Uniform<uint64_t>(rng_));
      auto s = std::make_shared<Series>();
      s->event = {
          {"apiVersion", resources::Events().ApiVersion()},
          {"kind", resources::Events().kind},
          {"metadata",
           {{"name", event_name}, {"namespace", ns.empty() ? kClusterScopedEventNamespace : ns}}},
          {"eventTime", FormatMicroTime(now)},
          {"reportingController", options_.reporting_controller},
          {"reportingInstance", options_.reporting_instance},
          {"type", std::string(type)},
          {"reason", reason_t},
          {"action", action_t},
          {"note", note_t},
          {"regarding", std::move(ref)},
      };
      s->last_observed = now;
      series_[std::move(series_key)] = s;
      queue_.push_back(Write{false, std::move(s)});
      if (series_.size() > options_.max_tracked) PruneLocked(now);
      outcome = Outcome::kEmitted;
    }
  }
  switch (outcome) {
    case Outcome::kEmitted:
      emitted_.Increment();
      break;
    case Outcome::kSeries:
      series_bumps_.Increment();
      break;
    case Outcome::kQueueFull:
    case Outcome::kRateLimited:
    case Outcome::kStopping:
      dropped_.Increment();
      spdlog::debug("event recorder: dropped event object={}/{} reason={} cause={}", ns, name,
                    reason_t,
                    outcome == Outcome::kQueueFull     ? "queue full"
                    : outcome == Outcome::kRateLimited ? "rate limited"
                                                       : "stopping");
      break;
  }
}

bool EventRecorder::TakeTokenLocked(const std::string& key, absl::Time now) {
  if (options_.burst <= 0) return true;
  const double burst = options_.burst;
  auto [it, inserted] = buckets_.try_emplace(key, Bucket{burst, now});
  Bucket& b = it->second;
  if (!inserted && now > b.last) {
    // Fractional tokens accumulate: with one per 5 min, 2.5 min adds 0.5.
    const double refill = options_.refill_every > absl::ZeroDuration()
                              ? absl::FDivDuration(now - b.last, options_.refill_every)
                              : burst;
    b.tokens = std::min(burst, b.tokens + refill);
    b.last = now;
  }
  const bool ok = b.tokens >= 1;
  if (ok) b.tokens -= 1;
  if (inserted && buckets_.size() > options_.max_tracked) PruneLocked(now);
  return ok;
}

void EventRecorder::PruneLocked(absl::Time now) {
  // Down to 90% so that pruning runs once per ~10% of max_tracked new keys.
  const size_t target = options_.max_tracked - options_.max_tracked / 10;
  if (series_.size() > options_.max_tracked) {
    absl::erase_if(series_, [&](const auto& kv) {
      return now - kv.second->last_observed > options_.series_window;
    });
    if (series_.size() > target) {
      std::vector<std::pair<absl::Time, std::string>> by_age;
      by_age.reserve(series_.size());
      for (const auto& [k, s] : series_) by_age.emplace_back(s->last_observed, k);
      const size_t drop = series_.size() - target;
      std::nth_element(by_age.begin(), by_age.begin() + drop, by_age.end());
      // A queued write keeps its Series alive; it just no longer takes bumps.
      for (size_t i = 0; i < drop; ++i) series_.erase(by_age[i].second);
    }
  }
  if (buckets_.size() > options_.max_tracked) {
    // A bucket that has refilled is the same as no bucket.
    absl::erase_if(buckets_, [&](const auto& kv) {
      const double refill = options_.refill_every > absl::ZeroDuration()
                                ? absl::FDivDuration(now - kv.second.last, options_.refill_every)
                                : options_.burst;
      return kv.second.tokens + refill >= options_.burst;
    });
    if (buckets_.size() > target) {
      // Forgetting a partly used bucket lets that object send a little more:
      // acceptable, and what client-go's bounded LRU does too.
      std::vector<std::pair<absl::Time, std::string>> by_age;
      by_age.reserve(buckets_.size());
      for (const auto& [k, b] : buckets_) by_age.emplace_back(b.last, k);
      const size_t drop = buckets_.size() - target;
      std::nth_element(by_age.begin(), by_age.begin() + drop, by_age.end());
      for (size_t i = 0; i < drop; ++i) buckets_.erase(by_age[i].second);
    }
  }
}

bool EventRecorder::Flush(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || (queue_.empty() && !in_flight_);
  };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout) && queue_.empty() && !in_flight_;
}

void EventRecorder::Run() {
  while (true) {
    Write write;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      write = std::move(queue_.front());
      queue_.pop_front();
      in_flight_ = true;
    }
    try {
      DoWrite(write);
    } catch (const std::exception& e) {
      // Nothing below should throw (strings are sanitised); never let the
      // worker die if something does.
      failed_.Increment();
      spdlog::error("event recorder: write threw: {}", e.what());
    }
    absl::MutexLock lock(&mu_);
    in_flight_ = false;
  }
}

void EventRecorder::DoWrite(const Write& write) {
  // `event` is never modified after Record() queued it (publication through mu_).
  const Object& event = write.series->event;
  const std::string ns = event["metadata"]["namespace"].get<std::string>();
  const std::string name = event["metadata"]["name"].get<std::string>();
  absl::Status status;
  if (!write.patch) {
    status = WriteWithRetry(false, event, ns, name);
  } else {
    Object series;
    {
      absl::MutexLock lock(&mu_);
      // Bumps from now on queue a new patch, which carries their count.
      write.series->patch_queued = false;
      series = {{"count", write.series->count},
                {"lastObservedTime", FormatMicroTime(write.series->last_observed)}};
    }
    status = WriteWithRetry(true, Object{{"series", series}}, ns, name);
    if (status.code() == absl::StatusCode::kNotFound) {
      // Its create failed, or the Event expired (the API server keeps Events
      // for an hour by default): start it again with the series so far.
      Object full = event;
      full["series"] = std::move(series);
      status = WriteWithRetry(false, full, ns, name);
    }
  }
  // AlreadyExists: a create whose answer was lost, then retried.
  if (!status.ok() && status.code() != absl::StatusCode::kAlreadyExists) {
    failed_.Increment();
    spdlog::warn("event recorder: cannot write event={}/{} reason={} error=\"{}\"", ns, name,
                 event.value("reason", ""), status);
  }
}

absl::Status EventRecorder::WriteWithRetry(bool patch, const Object& body, const std::string& ns,
                                           const std::string& name) {
  absl::Status status;
  for (int attempt = 1;; ++attempt) {
    status = patch ? client_.MergePatch(resources::Events(), ns, name, body).status()
                   : client_.Create(resources::Events(), ns, body).status();
    if (status.ok() || status.code() != absl::StatusCode::kUnavailable ||
        attempt >= options_.max_attempts) {
      return status;
    }
    absl::MutexLock lock(&mu_);
    // Real time on purpose: this paces I/O; no decision depends on it.
    if (mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.retry_backoff)) return status;
  }
}

}  // namespace capstan::kube
