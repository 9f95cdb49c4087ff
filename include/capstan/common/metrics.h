#pragma once

// Process-wide Prometheus metrics. Every family Capstan exports is declared
// here, so /metrics has one source of truth and tests can read values back.
// Secret values never become label values.

#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace capstan {

// Thread-safe (prometheus-cpp metrics are).
struct Metrics {
  std::shared_ptr<prometheus::Registry> registry;

  // API client: capstan_rest_requests_total{verb,code}, latency by verb.
  prometheus::Family<prometheus::Counter>* rest_requests;
  prometheus::Family<prometheus::Histogram>* rest_latency;

  // Work queue, by queue name.
  prometheus::Family<prometheus::Gauge>* workqueue_depth;
  prometheus::Family<prometheus::Counter>* workqueue_adds;
  prometheus::Family<prometheus::Counter>* workqueue_retries;
  prometheus::Family<prometheus::Histogram>* workqueue_queue_duration;
  prometheus::Family<prometheus::Histogram>* workqueue_work_duration;

  // Reconciles by controller and result (success, error, requeue).
  prometheus::Family<prometheus::Counter>* reconcile_total;
  prometheus::Family<prometheus::Histogram>* reconcile_duration;

  // 1 while this replica holds the lease.
  prometheus::Family<prometheus::Gauge>* leader;

  // Watches (re)started and relists after 410 Gone, by resource.
  prometheus::Family<prometheus::Counter>* watch_restarts;
  prometheus::Family<prometheus::Counter>* relists;
  // Seconds since each informer's last event, bookmark or list (refreshed every
  // few seconds), by resource: a watch gone quiet shows here before anything else.
  prometheus::Family<prometheus::Gauge>* informer_last_event_age;
  // Objects the API client refused to take in (nested too deep), by resource.
  prometheus::Family<prometheus::Counter>* objects_refused;
  // TLS handshakes with the API server, by resumed="true"/"false".
  prometheus::Family<prometheus::Counter>* tls_handshakes;

  // BlueGreen traffic switches by kind (promote, switch_back) and the time from the
  // decision to the completed Service selector write.
  prometheus::Family<prometheus::Counter>* bluegreen_switches;
  prometheus::Family<prometheus::Histogram>* bluegreen_switch_latency;
  // Automatic rollbacks after a failed revision, by strategy.
  prometheus::Family<prometheus::Counter>* rollbacks;

  // Events emitted and dropped by the recorder's rate limit.
  prometheus::Family<prometheus::Counter>* events;

  // SecretRotation: finished rotations by {namespace, name, target, result}
  // (target none | postgresql; result succeeded | failed), whether a Manual one is
  // due {namespace, name}, and seconds until each one's next rotation (negative while
  // overdue). Labels name objects, never values.
  prometheus::Family<prometheus::Counter>* secret_rotations;
  prometheus::Family<prometheus::Gauge>* secret_rotation_due;
  prometheus::Family<prometheus::Gauge>* secret_rotation_next_seconds;

  // The process-wide instance.
  static Metrics& Get();

  // Buckets for latencies in seconds: 1 ms .. ~30 s.
  static prometheus::Histogram::BucketBoundaries LatencyBuckets();
};

}  // namespace capstan
