#pragma once

// Kubernetes Events (events.k8s.io/v1) for `kubectl describe` and
// `kubectl events`, after client-go's tools/events broadcaster.
//
//  - De-duplication into series: the same (regarding uid, type, reason,
//    action, note) seen again within `series_window` of its last observation
//    does not create a new Event; it bumps the existing Event's
//    series {count, lastObservedTime} with a merge patch. Bumps that arrive
//    while a patch for the same series is still queued ride along with it
//    (the patch carries the latest count), so a hot loop costs one write.
//  - A spam filter: a token bucket per regarding object (default burst 25,
//    one token back every 5 minutes, like client-go's EventSourceObjectSpamFilter).
//    Every Record() takes a token; without one the event is dropped. Series
//    counts therefore count the occurrences that passed the filter.
//  - Record() never does I/O: it decides under a mutex and queues the write
//    for a background thread. When the bounded queue is full, the event is
//    dropped.
//  Metrics::Get().events counts Record() outcomes by result: "emitted" (a new
//  Event queued), "series" (a series bump), "dropped" (rate limit, full queue,
//  invalid type, or recorder stopping); and writes the API server refused,
//  after retries, as "failed".
//
// SECURITY: notes, reasons and actions are stored in the cluster and shown to
// anyone who can read Events. Callers must never put secret values (Secret
// data, tokens, passwords, generated keys) into them; name the Secret and key
// instead.

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"
#include "capstan/kube/client.h"

namespace prometheus {
class Counter;
}  // namespace prometheus

namespace capstan::kube {

inline constexpr char kEventTypeNormal[] = "Normal";
inline constexpr char kEventTypeWarning[] = "Warning";
inline constexpr char kReportingController[] = "capstan.dev/capstan";
// events.k8s.io/v1 validation limits, in bytes.
inline constexpr size_t kMaxEventNoteBytes = 1024;
inline constexpr size_t kMaxEventReasonBytes = 128;

// `s` cut to at most `max_bytes` bytes without splitting a UTF-8 character;
// invalid UTF-8 bytes become '?' (the JSON encoder would reject them).
std::string TruncateUtf8(absl::string_view s, size_t max_bytes);

struct EventRecorderOptions {
  std::string reporting_controller = kReportingController;
  // The replica: pass the leader elector's identity. "": DefaultIdentity().
  std::string reporting_instance;
  // A repeat within this long of the last occurrence joins the series.
  absl::Duration series_window = absl::Minutes(6);
  // Spam filter per regarding object; burst <= 0 turns it off.
  int burst = 25;
  absl::Duration refill_every = absl::Minutes(5);
  // Writes waiting for the background thread.
  size_t queue_capacity = 1000;
  // Series and spam-filter entries kept in memory (least recent go first).
  size_t max_tracked = 4096;
  // The destructor waits this long (real time) for queued writes.
  absl::Duration flush_timeout = absl::Seconds(2);
  // Attempts per write when the API server is unavailable, and the real-time
  // pause between them.
  int max_attempts = 3;
  absl::Duration retry_backoff = absl::Seconds(1);
};

// Thread-safe. The Client must outlive the recorder. RAII: the destructor
// flushes for up to flush_timeout, then drops what is left and stops.
class EventRecorder {
 public:
  EventRecorder(Client& client, EventRecorderOptions options,
                const Clock& clock = RealClock::Get());
  ~EventRecorder();

  EventRecorder(const EventRecorder&) = delete;
  EventRecorder& operator=(const EventRecorder&) = delete;

  // Records that `action` happened to `regarding` (a full object or a
  // reference: apiVersion, kind, metadata.name/namespace/uid/resourceVersion).
  // `type` is kEventTypeNormal or kEventTypeWarning. The note is cut to
  // kMaxEventNoteBytes, reason and action to kMaxEventReasonBytes. Never
  // blocks on I/O. See SECURITY above: no secret values in any argument.
  void Record(const Object& regarding, absl::string_view type, absl::string_view reason,
              absl::string_view action, absl::string_view note);

  // Waits (real time) until every queued write is done. False on timeout.
  bool Flush(absl::Duration timeout);

  const std::string& reporting_instance() const { return options_.reporting_instance; }

 private:
  // One Event this recorder created, and its series so far.
  struct Series {
    Object event;  // as created (no series); re-created from it on 404
    int64_t count = 1;
    absl::Time last_observed;
    bool patch_queued = false;
  };
  struct Write {
    bool patch = false;  // false: create
    std::shared_ptr<Series> series;
  };
  struct Bucket {
    double tokens = 0;
    absl::Time last;
  };

  void Run();
  void DoWrite(const Write& write);
  // Create or patch, retrying while the API server is unavailable.
  absl::Status WriteWithRetry(bool patch, const Object& body, const std::string& ns,
                              const std::string& name);
  bool TakeTokenLocked(const std::string& key, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PruneLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Client& client_;
  EventRecorderOptions options_;
  const Clock& clock_;
  prometheus::Counter& emitted_;
  prometheus::Counter& series_bumps_;
  prometheus::Counter& dropped_;
  prometheus::Counter& failed_;

  mutable absl::Mutex mu_;
  std::deque<Write> queue_ ABSL_GUARDED_BY(mu_);
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // By (regarding, type, reason, action, note).
  absl::flat_hash_map<std::string, std::shared_ptr<Series>> series_ ABSL_GUARDED_BY(mu_);
  // By regarding object.
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;
};

}  // namespace capstan::kube
