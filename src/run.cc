// `capstan run`: the operator process. Wires configuration, the API client,
// the health/metrics server, leader election, the event recorder and the
// controllers, then waits for SIGINT/SIGTERM and shuts down in order:
// stop workers -> release the Lease -> flush events -> stop caches.

#include "run.h"

#include <malloc.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "capstan/common/log.h"
#include "capstan/common/metrics.h"
#include "capstan/common/version.h"
#include "capstan/controller/environment_controller.h"
#include "capstan/controller/manager.h"
#include "capstan/controller/release_controller.h"
#include "capstan/controller/secret_rotation_controller.h"
#include "capstan/kube/client.h"
#include "capstan/kube/event_recorder.h"
#include "capstan/kube/informer.h"
#include "capstan/kube/leader_election.h"
#include "capstan/kube/resource.h"
#include "capstan/kube/rest_config.h"
#include "capstan/kube/transport.h"
#include "capstan/pgsql/postgres.h"
#include "capstan/server/http_server.h"

ABSL_FLAG(std::string, kubeconfig, "",
          "Path to a kubeconfig. Default: in-cluster when running in a pod, else $KUBECONFIG "
          "or ~/.kube/config.");
ABSL_FLAG(std::string, context, "", "kubeconfig context to use (default: current-context).");
ABSL_FLAG(std::string, namespace, "", "Watch only this namespace (default: all namespaces).");
ABSL_FLAG(std::string, health_address, ":8080", "Address for /healthz, /readyz and /metrics.");
ABSL_FLAG(bool, leader_elect, true,
          "Use a coordination.k8s.io Lease so only one replica reconciles at a time.");
ABSL_FLAG(std::string, leader_election_namespace, "",
          "Namespace of the Lease (default: $POD_NAMESPACE, the kubeconfig context's "
          "namespace, or \"default\").");
ABSL_FLAG(std::string, leader_election_id, "capstan-leader", "Name of the Lease.");
ABSL_FLAG(int, workers, 16,
          "Concurrent Release reconciles. A reconcile is ~0.5 ms of CPU and then waits for "
          "its API writes (10-200 ms on a busy API server), so many more than cores.");
ABSL_FLAG(double, kube_api_qps, 0,
          "Client-side API request rate limit (requests/second); 0: none. As in "
          "controller-runtime by default since 2025: the API server's Priority and Fairness "
          "pushes back (429 + Retry-After, honoured), and --workers bounds how many "
          "requests are in flight.");
ABSL_FLAG(int, kube_api_burst, 30, "Client-side API request burst (with --kube_api_qps > 0).");
ABSL_FLAG(int, resync_seconds, 600, "Re-check every Release this often without events.");
ABSL_FLAG(bool, secret_rotation, false,
          "Run the SecretRotation controller (needs Secrets RBAC: the chart grants it with "
          "secretRotation.enabled=true). Off by default, as in the chart: least privilege.");
ABSL_FLAG(std::vector<std::string>, secret_namespaces, {},
          "With --secret_rotation: the namespaces whose SecretRotations and Secrets are "
          "handled (one controller and one set of informers each, so Secret access can be "
          "granted per namespace with Roles); empty: --namespace, or all namespaces.");

namespace capstan {

int RunOperator() {
  // Signals are taken synchronously by this thread only; every thread
  // started below inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // No core dumps and no ptrace by other processes of the same user: the heap holds
  // the API token and, with SecretRotation, Secret values.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    spdlog::warn("cannot make the process non-dumpable (prctl PR_SET_DUMPABLE)");
  }

  const absl::Time started = absl::Now();
  // Every thread would otherwise get its own malloc arena (each keeps a few MB
  // of freed memory); Capstan's threads mostly wait on I/O, two arenas suffice.
  mallopt(M_ARENA_MAX, 2);
  server::InitCppRestThreads(4);

  kube::KubeconfigOptions ko;
  ko.path = absl::GetFlag(FLAGS_kubeconfig);
  ko.context = absl::GetFlag(FLAGS_context);
  absl::StatusOr<kube::RestConfig> config = kube::LoadRestConfig(ko);
  if (!config.ok()) {
    spdlog::error("cannot configure the API client: {}", config.status().message());
    return 1;
  }
  config->qps = absl::GetFlag(FLAGS_kube_api_qps);
  config->burst = absl::GetFlag(FLAGS_kube_api_burst);
  config->user_agent = absl::StrCat("capstan/", kVersion);
  spdlog::info("using {} (server {})", config->source, config->server);
  absl::StatusOr<std::unique_ptr<kube::Client>> client = kube::Client::FromConfig(*config);
  if (!client.ok()) {
    spdlog::error("cannot create the API client: {}", client.status().message());
    return 1;
  }

  std::string lease_ns = absl::GetFlag(FLAGS_leader_election_namespace);
  if (lease_ns.empty()) {
    const char* pod_ns = std::getenv("POD_NAMESPACE");
    lease_ns = pod_ns != nullptr && *pod_ns != '\0' ? pod_ns
               : !config->namespace_.empty()        ? config->namespace_
                                                    : "default";
  }
  const std::string identity = kube::DefaultIdentity();

  // Events get their own client and so their own rate budget: a burst of
  // Events (1,000 Releases rolling at once) must never delay reconcile writes.
  absl::StatusOr<std::unique_ptr<kube::Client>> event_client = kube::Client::FromConfig(*config);
  if (!event_client.ok()) {
    spdlog::error("cannot create the event client: {}", event_client.status().message());
    return 1;
  }
  kube::EventRecorderOptions eo;
  eo.reporting_instance = identity;
  kube::EventRecorder recorder(**event_client, eo);

  // The PostgreSQL client of spec.target.postgresql: before the manager, which owns the
  // SecretRotation controllers that use it.
  pgsql::PostgresDatabase postgres;
  // The controllers and one informer per kind, namespace and selector, which they share
  // (the Release and Environment controllers both read Releases, Environments,
  // Namespaces and AnalysisRuns; the SecretRotation controller Releases): each is
  // listed, watched and cached once. The manager starts and stops them in order.
  controller::Manager manager(**client);
  controller::ReleaseController::Options co;
  co.informers = &manager.informers();
  co.watch_namespace = absl::GetFlag(FLAGS_namespace);
  co.workers = absl::GetFlag(FLAGS_workers);
  co.resync = absl::Seconds(absl::GetFlag(FLAGS_resync_seconds));
  controller::ReleaseController& releases = manager.Make<controller::ReleaseController>(
      **client, co, [&recorder](const kube::Object& regarding, const rollout::Event& e) {
        recorder.Record(regarding, e.type, e.reason, e.action, e.note);
      });

  // Environments span namespaces, so their controller runs only when Capstan watches
  // all of them (a namespace-scoped operator would write a partial status).
  if (co.watch_namespace.empty()) {
    controller::EnvironmentController::Options envo;
    envo.resync = co.resync;
    envo.informers = &manager.informers();
    manager.Make<controller::EnvironmentController>(**client, envo);
  }

  // SecretRotation: same namespace, leader election and recorder; its own two
  // workers (rotations are rare, and a waiting rotation requeues, never blocks).
  controller::SecretRotationController::Options so;
  so.watch_namespace = co.watch_namespace;
  so.resync = co.resync;
  so.database = &postgres;
  // In the Release controller's scope its Releases informer is this one's too.
  so.informers = &manager.informers();
  // Freeze windows: the Environments the Release controller caches anyway.
  so.environment_of = [&releases](const std::string& ns) { return releases.EnvironmentOf(ns, ""); };
  // verify.analysis: the Release controller's analysis gates (one runner).
  so.analysis = &releases.Analysis();
  // One controller per namespace of --secret_namespaces (or one for all).
  if (absl::GetFlag(FLAGS_secret_rotation)) {
    std::vector<std::string> scopes = absl::GetFlag(FLAGS_secret_namespaces);
    if (scopes.empty()) scopes.push_back(co.watch_namespace);
    for (const std::string& scope : scopes) {
      if (!co.watch_namespace.empty() && scope != co.watch_namespace) continue;
      controller::SecretRotationController::Options one = so;
      one.watch_namespace = scope;
      manager.Make<controller::SecretRotationController>(
          **client, one,
          [&recorder](const kube::Object& regarding, const std::string& type,
                      const std::string& reason, const std::string& note) {
            recorder.Record(regarding, type, reason, "Rotate", note);
          });
    }
  }

  server::HealthServer health(absl::GetFlag(FLAGS_health_address));
  (void)health.AddReadinessCheck("informers-synced", [&manager] { return manager.HasSynced(); });
  // Liveness: an informer that made no progress (a list, an event, a bookmark) for 10
  // minutes keeps the operator deciding from stale data; a half-open watch is
  // re-opened after 150 s already, so this means the informer is truly stuck.
  (void)health.AddLivenessCheck("informers-progressing",
                                [] { return kube::StalledInformers(absl::Minutes(10)).empty(); });
  if (absl::Status s = health.Start(); !s.ok()) {
    spdlog::error("cannot serve health and metrics: {}", s.message());
    return 1;
  }
  spdlog::info("serving /healthz /readyz /metrics on port {}", health.port());

  // One request before the caches start. It says at once, in words, when the
  // API server does not answer or does not serve Releases (the informers would
  // only retry with backoff), and the TLS session it sets up lets the ~30
  // connections the informers open next resume it instead of each paying a
  // full handshake (measured: start to caches synced ~200 -> ~100 ms).
  {
    kube::ListOptions one;
    one.limit = 1;
    absl::StatusOr<kube::ListPage> probe =
        (*client)->List(kube::resources::Releases(), co.watch_namespace, one);
    if (!probe.ok()) {
      spdlog::error(
          "cannot list Releases (is the API server reachable, and are Capstan's CRDs "
          "installed? kubectl apply --server-side -f crds/): {}; retrying",
          probe.status().message());
    }
  }
  manager.StartCaches();
  // The first list holds whole objects (managedFields and all) for a moment;
  // once every cache holds only its projections, give the freed pages back so
  // that RSS shows what the caches keep, not the start-up peak. Then again every
  // minute: reconciles parse and render JSON, and glibc keeps what they free
  // (measured at 1,000 Releases: 41.6 MiB RSS, 32.2 MiB after a trim). A trim
  // costs milliseconds.
  // Stopped and joined when it goes out of scope, on every return path.
  struct Trimmer {
    absl::Notification stop;
    std::thread thread;
    ~Trimmer() {
      if (!stop.HasBeenNotified()) stop.Notify();
      if (thread.joinable()) thread.join();
    }
  } trimmer;
  trimmer.thread = std::thread([&releases, &trimmer, started] {
    // A thread entry: nothing thrown here may end the process.
    try {
      while (!releases.HasSynced()) {
        if (trimmer.stop.WaitForNotificationWithTimeout(absl::Milliseconds(20))) return;
      }
      const absl::Duration synced = absl::Now() - started;
      malloc_trim(0);
      spdlog::info("caches synced in {}", synced);
      while (!trimmer.stop.WaitForNotificationWithTimeout(absl::Minutes(1))) malloc_trim(0);
    } catch (const std::exception& e) {
      spdlog::error("memory trimmer stopped: {}", e.what());
    }
  });

  absl::Notification lost_lease;
  std::atomic<bool> lease_lost{false};
  std::unique_ptr<kube::Client> election_client;
  std::unique_ptr<kube::LeaderElector> elector;
  if (absl::GetFlag(FLAGS_leader_elect)) {
    kube::LeaderElectionConfig lc;
    lc.lease_namespace = lease_ns;
    lc.lease_name = absl::GetFlag(FLAGS_leader_election_id);
    lc.identity = identity;
    lc.on_started_leading = [&manager, &identity] {
      spdlog::info("became leader identity={}", identity);
      manager.StartWorkers();
    };
    // A replica that lost its lease exits at once, without draining, so that no
    // worker acts a moment longer (like kube-controller-manager's fatal log on
    // "leaderelection lost"); it restarts clean as a candidate.
    lc.on_stopped_leading = [&lost_lease, &lease_lost] {
      if (lost_lease.HasBeenNotified()) return;  // Stopping after a signal.
      lease_lost = true;
      spdlog::error("lost the leader lease; exiting so this replica restarts as a candidate");
      spdlog::default_logger()->flush();
      _exit(1);
    };
    lc.on_new_leader = [](const std::string& who) { spdlog::info("leader is {}", who); };
    // Its own client, so the controllers' rate limit never delays a renewal. Each
    // request gives up within a third of the renew deadline and is never retried by
    // the client (the elector's next attempt is the retry): a hanging API server
    // cannot hold a renew past the deadline (client-go bounds each attempt by it too).
    kube::RestConfig lease_config = *config;
    lease_config.timeout =
        std::max(absl::Seconds(1), absl::Floor(lc.renew_deadline / 3, absl::Seconds(1)));
    absl::StatusOr<std::unique_ptr<kube::Transport>> lease_transport =
        kube::NewCppRestTransport(lease_config);
    if (!lease_transport.ok()) {
      spdlog::error("cannot create the leader-election client: {}",
                    lease_transport.status().message());
      return 1;
    }
    kube::Client::Options lease_options;
    lease_options.qps = 0;
    lease_options.max_retries = 0;
    election_client = std::make_unique<kube::Client>(std::move(*lease_transport), lease_options);
    absl::StatusOr<std::unique_ptr<kube::LeaderElector>> e =
        kube::LeaderElector::New(*election_client, std::move(lc));
    if (!e.ok()) {
      spdlog::error("leader election: {}", e.status().message());
      return 1;
    }
    elector = std::move(*e);
    // Liveness: a leader whose renewals are stuck past the deadline (the watchdog
    // should have ended its term) is restarted by the kubelet.
    (void)health.AddLivenessCheck("leader-election",
                                  [&elector] { return elector == nullptr || elector->Healthy(); });
    elector->Start();
  } else {
    manager.StartWorkers();
  }
  spdlog::info("capstan {} started in {}", kVersion, absl::Now() - started);

  // Wait for a signal, or for the lease to be lost.
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig != 0 && !lost_lease.HasBeenNotified()) {
      spdlog::info("received signal {}, shutting down", sig);
      lost_lease.Notify();
    }
  });
  lost_lease.WaitForNotification();
  // Wake the waiter if the lease was lost rather than a signal received.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();

  manager.StopControllers();
  if (elector != nullptr) elector->Stop();  // Releases the Lease: a successor starts at once.
  recorder.Flush(absl::Seconds(2));
  manager.StopInformers();
  health.Stop();
  spdlog::info("stopped");
  return lease_lost ? 1 : 0;
}

}  // namespace capstan
