#pragma once

// Leader election on a coordination.k8s.io/v1 Lease, after client-go's
// tools/leaderelection.
//
// A candidate reads the Lease every retry_period (jittered, like client-go's
// JitterUntil with factor 1.2). It creates the Lease when there is none, and
// takes it over when nobody holds it (holderIdentity "") or when the record
// has not changed for leaseDurationSeconds *since this replica first saw it*:
// expiry is judged by our own clock from the moment we observed the record,
// never from renewTime, so clock skew between replicas cannot cut a lease
// short. The leader renews every retry_period with a PUT carrying the
// resourceVersion it last saw (409: someone else wrote; re-read). If no renew
// succeeds for renew_deadline it stops leading; because lease_duration >
// renew_deadline, it has stopped before any other replica may take over.
//
// Stop() (and the destructor) of a leading elector first calls
// on_stopped_leading, so leader-only work has ended, then releases the Lease
// (holderIdentity "", leaseDurationSeconds 1) so a successor takes over at
// its next retry instead of waiting out the lease.
//
// Deadlines are judged on a monotonic clock (observed records, the renew deadline,
// waits), so a wall-clock step can neither hand the lease over early nor keep a stale
// leader; only the times written into the Lease (renewTime, acquireTime) are wall
// times. A watchdog thread ends a term at the renew deadline even while the elector's
// thread is stuck in a request to a hanging API server (give the elector a Client
// whose requests time out well within renew_deadline and are not retried).
//
// How waits meet a FakeClock: the elector waits until a deadline on the
// injected clock, re-checking it after each real-time wait of the remaining
// duration and whenever Poke() is called. Tests advance a FakeClock and call
// Poke(); production never needs Poke().

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"
#include "capstan/kube/client.h"

namespace prometheus {
class Gauge;
}  // namespace prometheus

namespace capstan::kube {

// hostname + "_" + 16 random hex digits: unique per process, readable in
// `kubectl get lease -o yaml`.
std::string DefaultIdentity();

struct LeaderElectionConfig {
  std::string lease_namespace;
  std::string lease_name;
  // "": DefaultIdentity(). Must be unique among the replicas.
  std::string identity;
  // How long a non-leader waits after the record last changed before taking
  // over (written to spec.leaseDurationSeconds, rounded up to whole seconds).
  absl::Duration lease_duration = absl::Seconds(15);
  // How long the leader keeps trying to renew before it gives up leading.
  absl::Duration renew_deadline = absl::Seconds(10);
  // Time between attempts, for candidates and the leader.
  absl::Duration retry_period = absl::Seconds(2);

  // Callbacks run without locks held, one at a time, on the elector's thread;
  // on_stopped_leading runs on the watchdog thread instead when the renew deadline
  // passes while the elector's thread is stuck in a request (once per term either
  // way). They must return promptly: a slow on_started_leading delays the renewals.
  // on_stopped_leading must stop leader-only work before it returns (on Stop()
  // the Lease is released right after it); `capstan run` exits in it, as
  // kube-controller-manager does. After losing the lease the elector becomes a
  // candidate again and may lead again later.
  std::function<void()> on_started_leading;
  std::function<void()> on_stopped_leading;
  // The holder changed to `identity` (including to ourselves). Not called for
  // a released (empty) holder.
  std::function<void(const std::string& identity)> on_new_leader;
};

// Checks client-go's constraints: names set, lease_duration > renew_deadline >
// 1.2 * retry_period > 0.
absl::Status ValidateLeaderElectionConfig(const LeaderElectionConfig& config);

// The part of Lease.spec leader election reads and writes.
struct LeaseRecord {
  std::string holder_identity;
  int64_t lease_duration_seconds = 0;
  std::optional<absl::Time> acquire_time;
  std::optional<absl::Time> renew_time;
  int64_t lease_transitions = 0;

  bool operator==(const LeaseRecord&) const = default;
};

// Reads spec of a Lease; missing or mistyped fields read as empty/zero.
LeaseRecord LeaseRecordFromLease(const Object& lease);
// Writes `record` into lease->spec, leaving every other field as it was
// (a field the record leaves empty is removed).
void SetLeaseRecord(const LeaseRecord& record, Object* lease);

// The pure decision of one attempt. `current` is the record just read,
// `observed_time` when this replica first saw that exact record.
struct LeaseDecision {
  // False: another holder's lease is still valid; write nothing.
  bool write = false;
  // What to write when `write`: holder = identity, renewTime = now; acquireTime
  // and leaseTransitions kept on a renewal, acquireTime = now and
  // leaseTransitions + 1 on a takeover.
  LeaseRecord record;
};
LeaseDecision DecideLease(const LeaseRecord& current, absl::Time observed_time,
                          const std::string& identity, absl::Duration lease_duration,
                          absl::Time now);

// The record a leader writes when it steps down: nobody holds it and it
// expires in a second, so a successor need not wait out the lease.
LeaseRecord ReleasedLeaseRecord(const LeaseRecord& current, absl::Time now);

// Runs leader election for one Lease on its own thread. Thread-safe. The
// Client must outlive the elector; give the elector a Client of its own (as
// client-go advises) so a busy controller's client-side rate limit cannot
// delay renewals. RAII: the destructor stops the elector and releases the
// Lease if it leads. Callbacks must not destroy the elector.
class LeaderElector {
 public:
  // Fails when the config is invalid (see ValidateLeaderElectionConfig).
  // `clock` stamps the Lease's times; `deadline_clock` measures durations (null: the
  // monotonic clock when `clock` is the real one, else `clock` itself, so a test's
  // FakeClock drives both).
  static absl::StatusOr<std::unique_ptr<LeaderElector>> New(Client& client,
                                                            LeaderElectionConfig config,
                                                            const Clock& clock = RealClock::Get(),
                                                            const Clock* deadline_clock = nullptr);
  ~LeaderElector();

  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  // Starts the election thread. Only the first call has an effect.
  void Start();
  // Stops the thread; if leading, calls on_stopped_leading and then releases
  // the Lease. Waits for a request in flight (bounded by the transport
  // timeout). Idempotent.
  void Stop();

  // True while this replica holds the Lease: the last successful write (by
  // the time it was started) is less than renew_deadline ago. Turns false at
  // the deadline even while the elector's thread is stuck in a request.
  bool IsLeader() const;
  // The holder last observed ("" when unknown or released).
  std::string Leader() const;
  const std::string& identity() const { return config_.identity; }

  // Wakes the elector to re-read the clock. Tests call it after advancing a
  // FakeClock.
  void Poke();

  // False while this replica leads but no renew succeeded for longer than
  // renew_deadline plus `grace` (the elector or its watchdog is stuck): what a
  // liveness probe asks. True for candidates.
  bool Healthy(absl::Duration grace = absl::Seconds(5)) const;

  // Steps taken so far (an attempt to acquire or renew, or noticing the renew
  // deadline passed), each followed by a wait. A test waits for it to move
  // before advancing a FakeClock, so the step's own clock readings are done.
  int64_t Steps() const;

 private:
  enum class Attempt { kHeld, kHeldByOther, kFailed };

  LeaderElector(Client& client, LeaderElectionConfig config, const Clock& clock,
                const Clock& deadline_clock);

  void Run();
  // Ends a term whose renew deadline passed while the elector's thread is stuck.
  void Watchdog();
  // Ends term `term` (calls on_stopped_leading) unless it already ended or a later term
  // began; true when it did.
  bool EndTerm(int64_t term);
  // One client-go tryAcquireOrRenew. Touches the observed_* members; elector
  // thread only.
  // `now` on the deadline clock; the Lease's times are read from clock_.
  Attempt TryAcquireOrRenew(absl::Time now);
  LeaseDecision Decide(absl::Time now) const;
  absl::StatusOr<Object> CreateLease(absl::Time wall_now);
  void Observe(const Object& lease, absl::Time now);
  void LogFailure(absl::string_view verb, const absl::Status& status);
  void MaybeReportLeader();
  void Release();
  // Waits until `until` on the clock; false when asked to stop.
  bool WaitUntil(absl::Time until);
  std::string LeaseKey() const;

  Client& client_;
  const LeaderElectionConfig config_;
  const Clock& clock_;
  const Clock& deadline_clock_;
  prometheus::Gauge& leader_gauge_;

  // Elector thread only.
  bool have_observed_ = false;
  Object observed_lease_;
  LeaseRecord observed_record_;
  absl::Time observed_time_;  // deadline clock
  std::string reported_leader_;
  std::string last_error_;

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t pokes_ ABSL_GUARDED_BY(mu_) = 0;
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  // on_stopped_leading was called for the current term.
  bool term_ended_ ABSL_GUARDED_BY(mu_) = true;
  // Terms begun so far; the current (or last) term's number.
  int64_t term_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t steps_ ABSL_GUARDED_BY(mu_) = 0;
  // Start of the last successful acquire/renew (deadline clock).
  absl::Time last_renew_ ABSL_GUARDED_BY(mu_);
  int64_t renews_ ABSL_GUARDED_BY(mu_) = 0;
  std::string leader_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;
  std::thread watchdog_;
};

}  // namespace capstan::kube
