#include "capstan/common/metrics.h"

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"

namespace capstan {

prometheus::Histogram::BucketBoundaries Metrics::LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}

Metrics& Metrics::Get() {
  static Metrics* metrics = [] {
    auto* m = new Metrics();
    m->registry = std::make_shared<prometheus::Registry>();
    auto& r = *m->registry;
    m->rest_requests = &prometheus::BuildCounter()
                            .Name("capstan_rest_requests_total")
                            .Help("API server requests by verb and HTTP code (0: no answer).")
                            .Register(r);
    m->rest_latency = &prometheus::BuildHistogram()
                           .Name("capstan_rest_request_duration_seconds")
                           .Help("API server request latency by verb.")
                           .Register(r);
    m->workqueue_depth = &prometheus::BuildGauge()
                              .Name("capstan_workqueue_depth")
                              .Help("Keys waiting in the work queue.")
                              .Register(r);
    m->workqueue_adds = &prometheus::BuildCounter()
                             .Name("capstan_workqueue_adds_total")
                             .Help("Keys added to the work queue.")
                             .Register(r);
    m->workqueue_retries = &prometheus::BuildCounter()
                                .Name("capstan_workqueue_retries_total")
                                .Help("Keys re-added with rate-limited backoff.")
                                .Register(r);
    m->workqueue_queue_duration =
        &prometheus::BuildHistogram()
             .Name("capstan_workqueue_queue_duration_seconds")
             .Help("Time a key waits in the queue before a worker takes it.")
             .Register(r);
    m->workqueue_work_duration = &prometheus::BuildHistogram()
                                      .Name("capstan_workqueue_work_duration_seconds")
                                      .Help("Time a worker spends on one key.")
                                      .Register(r);
    m->reconcile_total = &prometheus::BuildCounter()
                              .Name("capstan_reconcile_total")
                              .Help("Reconciles by controller and result.")
                              .Register(r);
    m->reconcile_duration = &prometheus::BuildHistogram()
                                 .Name("capstan_reconcile_duration_seconds")
                                 .Help("Reconcile duration by controller.")
                                 .Register(r);
    m->leader = &prometheus::BuildGauge()
                     .Name("capstan_leader")
                     .Help("1 while this replica holds the leader lease.")
                     .Register(r);
    m->watch_restarts = &prometheus::BuildCounter()
                             .Name("capstan_watch_restarts_total")
                             .Help("Watches re-opened after they ended, by resource.")
                             .Register(r);
    m->relists = &prometheus::BuildCounter()
                      .Name("capstan_relists_total")
                      .Help("Full relists (initial, or after 410 Gone), by resource.")
                      .Register(r);
    m->informer_last_event_age =
        &prometheus::BuildGauge()
             .Name("capstan_informer_last_event_age_seconds")
             .Help("Seconds since the informer's last watch event, bookmark or list, by resource.")
             .Register(r);
    m->objects_refused = &prometheus::BuildCounter()
                              .Name("capstan_api_objects_refused_total")
                              .Help(
                                  "Objects from the API server left out of the caches because "
                                  "they are nested too deep, by resource.")
                              .Register(r);
    m->tls_handshakes = &prometheus::BuildCounter()
                             .Name("capstan_tls_handshakes_total")
                             .Help(
                                 "TLS handshakes with the API server; resumed=\"true\": an "
                                 "earlier session was reused (no certificate signatures).")
                             .Register(r);
    m->bluegreen_switches = &prometheus::BuildCounter()
                                 .Name("capstan_bluegreen_switches_total")
                                 .Help("BlueGreen traffic switches by kind (promote, switch_back).")
                                 .Register(r);
    m->bluegreen_switch_latency =
        &prometheus::BuildHistogram()
             .Name("capstan_bluegreen_switch_seconds")
             .Help("Time from the decision to switch traffic to the completed Service write.")
             .Register(r);
    m->rollbacks = &prometheus::BuildCounter()
                        .Name("capstan_rollbacks_total")
                        .Help(
                            "Automatic rollbacks (RollingUpdate) and switch-backs (BlueGreen) "
                            "after a failed revision, by strategy.")
                        .Register(r);
    m->events = &prometheus::BuildCounter()
                     .Name("capstan_events_total")
                     .Help("Kubernetes Events by result (emitted, aggregated, dropped).")
                     .Register(r);
    m->secret_rotations = &prometheus::BuildCounter()
                               .Name("capstan_secret_rotations_total")
                               .Help(
                                   "SecretRotation rotations finished, by target (none, "
                                   "postgresql) and result (succeeded, failed).")
                               .Register(r);
    m->secret_rotation_due =
        &prometheus::BuildGauge()
             .Name("capstan_secret_rotation_due")
             .Help(
                 "1 while a rotation with trigger Manual is due and waits for a person "
                 "(capstan.dev/rotate), else 0.")
             .Register(r);
    m->secret_rotation_next_seconds =
        &prometheus::BuildGauge()
             .Name("capstan_secret_rotation_next_seconds")
             .Help("Seconds until the next rotation of each SecretRotation (negative: overdue).")
             .Register(r);
    return m;
  }();
  return *metrics;
}

}  // namespace capstan
