#include "capstan/kube/leader_election.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "capstan/common/log.h"
#include "capstan/common/metrics.h"
#include "capstan/common/monotonic_clock.h"
#include "capstan/kube/micro_time.h"
#include "capstan/kube/resource.h"
#include "prometheus/gauge.h"

namespace capstan::kube {
namespace {

// client-go's JitterFactor: candidates wait retry_period * [1, 2.2) so that
// replicas started together spread out.
constexpr double kJitterFactor = 1.2;

int64_t LeaseSeconds(absl::Duration d) {
  // Round up: a holder may declare a longer lease than configured, never a
  // shorter one (a 300 ms test lease is written as 1 s).
  return std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(d, absl::Seconds(1))));
}

std::optional<absl::Time> TimeField(const Object& spec, const char* key) {
  auto it = spec.find(key);
  if (it == spec.end() || !it->is_string()) return std::nullopt;
  return ParseMicroTime(it->get<std::string>());
}

int64_t IntField(const Object& spec, const char* key) {
  auto it = spec.find(key);
  return it != spec.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

}  // namespace

std::string DefaultIdentity() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof(host), "capstan");
  }
  absl::BitGen rng;
  return absl::StrFormat("%s_%016x", host, absl::Uniform<uint64_t>(rng));
}

absl::Status ValidateLeaderElectionConfig(const LeaderElectionConfig& c) {
  if (c.lease_namespace.empty() || c.lease_name.empty()) {
    return absl::InvalidArgumentError("leader election: lease namespace and name are required");
  }
  if (c.identity.empty()) {
    return absl::InvalidArgumentError("leader election: identity is required");
  }
  if (c.retry_period <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("leader election: retry_period must be positive");
  }
  if (c.renew_deadline <= c.retry_period * kJitterFactor) {
    return absl::InvalidArgumentError(absl::StrCat(
        "leader election: renew_deadline (", absl::FormatDuration(c.renew_deadline),
        ") must be greater than 1.2 * retry_period (", absl::FormatDuration(c.retry_period), ")"));
  }
  if (c.lease_duration <= c.renew_deadline) {
    return absl::InvalidArgumentError(absl::StrCat(
        "leader election: lease_duration (", absl::FormatDuration(c.lease_duration),
        ") must be greater than renew_deadline (", absl::FormatDuration(c.renew_deadline), ")"));
  }
  return absl::OkStatus();
}

LeaseRecord LeaseRecordFromLease(const Object& lease) {
  LeaseRecord r;
  auto spec_it = lease.find("spec");
  if (spec_it == lease.end() || !spec_it->is_object()) return r;
  const Object& spec = *spec_it;
  if (auto it = spec.find("holderIdentity"); it != spec.end() && it->is_string()) {
    r.holder_identity = it->get<std::string>();
  }
  r.lease_duration_seconds = IntField(spec, "leaseDurationSeconds");
  r.acquire_time = TimeField(spec, "acquireTime");
  r.renew_time = TimeField(spec, "renewTime");
  r.lease_transitions = IntField(spec, "leaseTransitions");
  return r;
}

void SetLeaseRecord(const LeaseRecord& r, Object* lease) {
  Object& spec = (*lease)["spec"];
  if (!spec.is_object()) spec = Object::object();
  // Written even when empty, like client-go: "" is how a release reads.
  spec["holderIdentity"] = r.holder_identity;
  spec["leaseDurationSeconds"] = r.lease_duration_seconds;
  spec["leaseTransitions"] = r.lease_transitions;
  if (r.acquire_time.has_value()) {
    spec["acquireTime"] = FormatMicroTime(*r.acquire_time);
  } else {
    spec.erase("acquireTime");
  }
  if (r.renew_time.has_value()) {
    spec["renewTime"] = FormatMicroTime(*r.renew_time);
  } else {
    spec.erase("renewTime");
  }
}

LeaseDecision DecideLease(const LeaseRecord& current, absl::Time observed_time,
                          const std::string& identity, absl::Duration lease_duration,
                          absl::Time now) {
  LeaseDecision d;
  const bool ours = current.holder_identity == identity;
  // Valid by *our* clock from when we first saw this record: renewTime was
  // written by another replica's clock and is never compared with ours.
  const bool valid = observed_time + absl::Seconds(current.lease_duration_seconds) > now;
  if (!current.holder_identity.empty() && !ours && valid) return d;
  d.write = true;
  d.record.holder_identity = identity;
  d.record.lease_duration_seconds = LeaseSeconds(lease_duration);
  d.record.renew_time = now;
  if (ours) {
    d.record.acquire_time = current.acquire_time.has_value() ? current.acquire_time : now;
    d.record.lease_transitions = current.lease_transitions;
  } else {
    d.record.acquire_time = now;
    d.record.lease_transitions = current.lease_transitions + 1;
  }
  return d;
}

LeaseRecord ReleasedLeaseRecord(const LeaseRecord& current, absl::Time now) {
  LeaseRecord r;
  r.holder_identity = "";
  r.lease_duration_seconds = 1;
  r.acquire_time = now;
  r.renew_time = now;
  r.lease_transitions = current.lease_transitions;
  return r;
}

absl::StatusOr<std::unique_ptr<LeaderElector>> LeaderElector::New(Client& client,
                                                                  LeaderElectionConfig config,
                                                                  const Clock& clock,
                                                                  const Clock* deadline_clock) {
  if (config.identity.empty()) config.identity = DefaultIdentity();
  if (absl::Status s = ValidateLeaderElectionConfig(config); !s.ok()) return s;
  const Clock& deadlines = deadline_clock != nullptr     ? *deadline_clock
                           : &clock == &RealClock::Get() ? MonotonicClock::Get()
                                                         : clock;
  return std::unique_ptr<LeaderElector>(
      new LeaderElector(client, std::move(config), clock, deadlines));
}

LeaderElector::LeaderElector(Client& client, LeaderElectionConfig config, const Clock& clock,
                             const Clock& deadline_clock)
    : client_(client),
      config_(std::move(config)),
      clock_(clock),
      deadline_clock_(deadline_clock),
      leader_gauge_(Metrics::Get().leader->Add({{"lease", LeaseKey()}})) {}

LeaderElector::~LeaderElector() { Stop(); }

std::string LeaderElector::LeaseKey() const {
  return absl::StrCat(config_.lease_namespace, "/", config_.lease_name);
}

void LeaderElector::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stop_) return;
  started_ = true;
  thread_ = std::thread([this] { Run(); });
  watchdog_ = std::thread([this] { Watchdog(); });
}

void LeaderElector::Stop() {
  std::thread thread;
  std::thread watchdog;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    thread = std::move(thread_);
    watchdog = std::move(watchdog_);
  }
  if (watchdog.joinable()) {
    if (watchdog.get_id() == std::this_thread::get_id()) {
      watchdog.detach();  // Stop() from on_stopped_leading on the watchdog: it ends by itself.
    } else {
      watchdog.join();
    }
  }
  if (!thread.joinable()) return;
  if (thread.get_id() == std::this_thread::get_id()) {
    // Called from a callback: the thread ends by itself once it returns; the
    // destructor's Stop() joins it.
    absl::MutexLock lock(&mu_);
    thread_ = std::move(thread);
    return;
  }
  thread.join();
}

bool LeaderElector::IsLeader() const {
  absl::MutexLock lock(&mu_);
  return leading_ && deadline_clock_.Now() < last_renew_ + config_.renew_deadline;
}

bool LeaderElector::Healthy(absl::Duration grace) const {
  absl::MutexLock lock(&mu_);
  return !leading_ || deadline_clock_.Now() < last_renew_ + config_.renew_deadline + grace;
}

bool LeaderElector::EndTerm(int64_t term) {
  {
    absl::MutexLock lock(&mu_);
    if (term != term_) {
      // A watchdog that decided before it was descheduled: its term is over and a new
      // one began since. Ending that one would stop a leader whose lease is fresh.
      spdlog::debug("leader election: term {} already ended; term {} goes on", term, term_);
      return false;
    }
    leading_ = false;
    if (term_ended_) return false;
    term_ended_ = true;
  }
  leader_gauge_.Set(0);
  if (config_.on_stopped_leading) config_.on_stopped_leading();
  return true;
}

void LeaderElector::Watchdog() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    const int64_t pokes = pokes_;
    const int64_t renews = renews_;
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_ || pokes_ != pokes || renews_ != renews;
    };
    if (!leading_ || term_ended_) {
      // Re-checked at every renew, poke or stop, and once a second regardless.
      mu_.AwaitWithTimeout(absl::Condition(&changed), absl::Seconds(1));
      continue;
    }
    const absl::Duration left = last_renew_ + config_.renew_deadline - deadline_clock_.Now();
    if (left > absl::ZeroDuration()) {
      mu_.AwaitWithTimeout(absl::Condition(&changed), left);
      continue;
    }
    // The deadline passed and the elector's thread has not noticed: it is stuck in
    // a request. Leader-only work ends now, not when that request gives up.
    const int64_t term = term_;
    mu_.Unlock();
    spdlog::warn(
        "leader election: lost leadership lease={} identity={} reason=\"no renew succeeded "
        "within {} (a request to the API server is hanging)\"",
        LeaseKey(), config_.identity, config_.renew_deadline);
    EndTerm(term);
    mu_.Lock();
  }
}

std::string LeaderElector::Leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

void LeaderElector::Poke() {
  absl::MutexLock lock(&mu_);
  ++pokes_;
}

int64_t LeaderElector::Steps() const {
  absl::MutexLock lock(&mu_);
  return steps_;
}

bool LeaderElector::WaitUntil(absl::Time until) {
  absl::MutexLock lock(&mu_);
  ++steps_;
  while (!stop_) {
    const absl::Duration left = until - deadline_clock_.Now();
    if (left <= absl::ZeroDuration()) return true;
    const int64_t pokes = pokes_;
    auto woken = [this, pokes]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || pokes_ != pokes; };
    // A RealClock reaches `until` when this times out; a FakeClock is
    // re-read after each timeout or poke.
    mu_.AwaitWithTimeout(absl::Condition(&woken), left);
  }
  return false;
}

void LeaderElector::Run() {
  absl::BitGen rng;
  const auto jittered = [&] {
    return config_.retry_period * (1 + absl::Uniform(rng, 0.0, kJitterFactor));
  };
  absl::Time next;
  bool stopping = false;
  for (bool first = true; !stopping; first = false) {
    // The first attempt is at once; later ones after a (jittered) retry_period.
    if (first) {
      absl::MutexLock lock(&mu_);
      if (stop_) break;
    } else if (!WaitUntil(next)) {
      break;
    }
    // Candidate.
    absl::Time now = deadline_clock_.Now();
    Attempt attempt = TryAcquireOrRenew(now);
    MaybeReportLeader();
    if (attempt != Attempt::kHeld) {
      next = deadline_clock_.Now() + jittered();
      continue;
    }
    int64_t term = 0;
    {
      absl::MutexLock lock(&mu_);
      leading_ = true;
      term_ended_ = false;
      term = ++term_;
      last_renew_ = now;
      ++renews_;
    }
    leader_gauge_.Set(1);
    spdlog::info("leader election: became leader lease={} identity={}", LeaseKey(),
                 config_.identity);
    if (config_.on_started_leading) config_.on_started_leading();

    // Leader: renew every retry_period; give up once no renew has succeeded
    // for renew_deadline, or at once when another holder has the lease.
    next = now + config_.retry_period;
    while (true) {
      if (!WaitUntil(next)) {
        stopping = true;
        break;
      }
      now = deadline_clock_.Now();
      absl::Time deadline;
      bool ended = false;
      {
        absl::MutexLock lock(&mu_);
        deadline = last_renew_ + config_.renew_deadline;
        ended = term_ended_;
      }
      if (ended) break;  // The watchdog ended the term while we were stuck.
      if (now >= deadline) {
        spdlog::warn(
            "leader election: lost leadership lease={} identity={} reason=\"no renew "
            "succeeded within {}\"",
            LeaseKey(), config_.identity, config_.renew_deadline);
        break;
      }
      attempt = TryAcquireOrRenew(now);
      MaybeReportLeader();
      if (attempt == Attempt::kHeld) {
        absl::MutexLock lock(&mu_);
        if (term_ended_) break;  // Renewed too late: the watchdog already ended the term.
        last_renew_ = now;
        ++renews_;
        next = now + config_.retry_period;
        continue;
      }
      if (attempt == Attempt::kHeldByOther) {
        spdlog::warn("leader election: lost leadership lease={} identity={} holder={}", LeaseKey(),
                     config_.identity, observed_record_.holder_identity);
        break;
      }
      next = std::min(now + config_.retry_period, deadline);
    }
    if (!stopping) {
      spdlog::info("leader election: stopped leading lease={} identity={}", LeaseKey(),
                   config_.identity);
    }
    // Before the release: leader-only work must have stopped before a
    // successor can take over.
    EndTerm(term);
    next = deadline_clock_.Now() + jittered();
  }
  Release();
}

LeaderElector::Attempt LeaderElector::TryAcquireOrRenew(absl::Time now) {
  const Resource& leases = resources::Leases();
  const std::string& ns = config_.lease_namespace;

  // Fast path: we hold it and our copy is fresh, so write without re-reading.
  // A 409 means someone else wrote; fall through and re-read.
  if (have_observed_ && observed_record_.holder_identity == config_.identity &&
      observed_time_ + absl::Seconds(observed_record_.lease_duration_seconds) > now) {
    LeaseDecision d = Decide(now);
    Object lease = observed_lease_;
    SetLeaseRecord(d.record, &lease);
    absl::StatusOr<Object> updated = client_.Update(leases, ns, lease);
    if (updated.ok()) {
      last_error_.clear();
      Observe(*updated, deadline_clock_.Now());
      return Attempt::kHeld;
    }
    spdlog::debug("leader election: renew failed, re-reading lease={} error=\"{}\"", LeaseKey(),
                  updated.status());
  }

  absl::StatusOr<Object> got = client_.Get(leases, ns, config_.lease_name);
  if (!got.ok() && got.status().code() == absl::StatusCode::kNotFound) {
    absl::StatusOr<Object> created = CreateLease(clock_.Now());
    if (created.ok()) {
      last_error_.clear();
      Observe(*created, deadline_clock_.Now());
      return Attempt::kHeld;
    }
    if (created.status().code() != absl::StatusCode::kAlreadyExists) {
      LogFailure("create", created.status());
      return Attempt::kFailed;
    }
    // Another replica created it between our GET and POST: read theirs.
    got = client_.Get(leases, ns, config_.lease_name);
  }
  if (!got.ok()) {
    LogFailure("read", got.status());
    return Attempt::kFailed;
  }
  const absl::Time read_at = deadline_clock_.Now();
  LeaseRecord current = LeaseRecordFromLease(*got);
  if (!have_observed_ || current != observed_record_) {
    // The record changed (or is new to us): its lease runs from now, by our clock.
    observed_record_ = std::move(current);
    observed_time_ = read_at;
    have_observed_ = true;
  }
  observed_lease_ = std::move(*got);

  LeaseDecision d = Decide(now);
  if (!d.write) return Attempt::kHeldByOther;
  Object lease = observed_lease_;
  SetLeaseRecord(d.record, &lease);
  absl::StatusOr<Object> updated = client_.Update(leases, ns, lease);
  if (!updated.ok()) {
    // 409: another replica wrote first; the next attempt re-reads.
    LogFailure("write", updated.status());
    return Attempt::kFailed;
  }
  last_error_.clear();
  if (observed_record_.holder_identity != config_.identity) {
    spdlog::info(
        "leader election: took over lease={} identity={} previous_holder={} transitions={}",
        LeaseKey(), config_.identity, observed_record_.holder_identity, d.record.lease_transitions);
  }
  Observe(*updated, deadline_clock_.Now());
  return Attempt::kHeld;
}

LeaseDecision LeaderElector::Decide(absl::Time now) const {
  // Validity on the deadline clock (observed_time_ is on it too); the record then
  // carries wall times, as other replicas and kubectl read them.
  LeaseDecision d =
      DecideLease(observed_record_, observed_time_, config_.identity, config_.lease_duration, now);
  if (!d.write) return d;
  const absl::Time wall = clock_.Now();
  d.record.renew_time = wall;
  if (d.record.acquire_time == now) d.record.acquire_time = wall;
  return d;
}

absl::StatusOr<Object> LeaderElector::CreateLease(absl::Time now) {
  LeaseRecord r;
  r.holder_identity = config_.identity;
  r.lease_duration_seconds = LeaseSeconds(config_.lease_duration);
  r.acquire_time = now;
  r.renew_time = now;
  r.lease_transitions = 0;
  Object lease = {
      {"apiVersion", resources::Leases().ApiVersion()},
      {"kind", resources::Leases().kind},
      {"metadata", {{"name", config_.lease_name}, {"namespace", config_.lease_namespace}}}};
  SetLeaseRecord(r, &lease);
  return client_.Create(resources::Leases(), config_.lease_namespace, lease);
}

void LeaderElector::LogFailure(absl::string_view verb, const absl::Status& status) {
  // A candidate retries every few seconds: say each distinct failure once at
  // warn (a missing RBAC rule must be visible), repeats at debug.
  std::string text = absl::StrCat(verb, ": ", status.ToString());
  const bool conflict = status.code() == absl::StatusCode::kAborted;
  if (text == last_error_ || conflict) {
    spdlog::debug("leader election: cannot {} lease={} error=\"{}\"", verb, LeaseKey(), status);
  } else {
    spdlog::warn("leader election: cannot {} lease={} error=\"{}\"", verb, LeaseKey(), status);
  }
  last_error_ = std::move(text);
}

void LeaderElector::Observe(const Object& lease, absl::Time now) {
  observed_lease_ = lease;
  observed_record_ = LeaseRecordFromLease(lease);
  observed_time_ = now;
  have_observed_ = true;
}

void LeaderElector::MaybeReportLeader() {
  if (!have_observed_) return;
  const std::string& holder = observed_record_.holder_identity;
  {
    absl::MutexLock lock(&mu_);
    leader_ = holder;
  }
  if (holder == reported_leader_) return;
  reported_leader_ = holder;
  if (holder.empty()) return;
  spdlog::info("leader election: new leader lease={} holder={}", LeaseKey(), holder);
  if (config_.on_new_leader) config_.on_new_leader(holder);
}

void LeaderElector::Release() {
  if (!have_observed_ || observed_record_.holder_identity != config_.identity) return;
  Object lease = observed_lease_;
  SetLeaseRecord(ReleasedLeaseRecord(observed_record_, clock_.Now()), &lease);
  // One attempt with the resourceVersion we last wrote: a conflict means
  // someone else already wrote the lease, and then there is nothing to release.
  absl::StatusOr<Object> updated =
      client_.Update(resources::Leases(), config_.lease_namespace, lease);
  if (!updated.ok()) {
    spdlog::warn("leader election: cannot release lease={} identity={} error=\"{}\"", LeaseKey(),
                 config_.identity, updated.status());
    return;
  }
  Observe(*updated, deadline_clock_.Now());
  {
    absl::MutexLock lock(&mu_);
    leader_ = "";
  }
  spdlog::info("leader election: released lease={} identity={}", LeaseKey(), config_.identity);
}

}  // namespace capstan::kube
