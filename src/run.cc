// `capstan run`: the operator process. Wires configuration, the API client,
// the health/metrics server, leader election, the event recorder and the
// controllers, then waits for SIGINT/SIGTERM and shuts down in order:
// stop workers -> release the Lease -> flush events -> stop caches.

#include "run.h"

#include <malloc.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
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
#include "capstan/common/status_macros.h"
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
namespace {

// Signals are taken synchronously by the main thread only (WaitForStop); every thread
// started afterwards inherits the blocked mask. No core dumps and no ptrace by other
// processes of the same user: the heap holds the API token and, with SecretRotation,
// Secret values.
sigset_t BlockSignalsAndDumps() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    spdlog::warn("cannot make the process non-dumpable (prctl PR_SET_DUMPABLE)");
  }
  return signals;
}

// The API client's configuration from the flags (kubeconfig, context, rate limits).
absl::StatusOr<kube::RestConfig> ClientConfig() {
  kube::KubeconfigOptions ko;
  ko.path = absl::GetFlag(FLAGS_kubeconfig);
  ko.context = absl::GetFlag(FLAGS_context);
  absl::StatusOr<kube::RestConfig> config = kube::LoadRestConfig(ko);
  if (!config.ok()) return config.status();
  config->qps = absl::GetFlag(FLAGS_kube_api_qps);
  config->burst = absl::GetFlag(FLAGS_kube_api_burst);
  config->user_agent = absl::StrCat("capstan/", kVersion);
  return config;
}

// The Lease's namespace: the flag, else the pod's, else the kubeconfig context's.
std::string LeaseNamespace(const kube::RestConfig& config) {
  std::string lease_ns = absl::GetFlag(FLAGS_leader_election_namespace);
  if (!lease_ns.empty()) return lease_ns;
  const char* pod_ns = std::getenv("POD_NAMESPACE");
  if (pod_ns != nullptr && *pod_ns != '\0') return pod_ns;
  return !config.namespace_.empty() ? config.namespace_ : "default";
}

// The controllers, made by the manager, which owns one informer per kind, namespace and
// selector that they share (the Release and Environment controllers both read Releases,
// Environments, Namespaces and AnalysisRuns; the SecretRotation controller Releases):
// each is listed, watched and cached once. Returns the Release controller.
controller::ReleaseController& MakeControllers(controller::Manager& manager, kube::Client& client,
                                               kube::EventRecorder& recorder,
                                               pgsql::PostgresDatabase& postgres) {
  controller::ReleaseController::Options co;
  co.informers = &manager.informers();
  co.watch_namespace = absl::GetFlag(FLAGS_namespace);
  co.workers = absl::GetFlag(FLAGS_workers);
  co.resync = absl::Seconds(absl::GetFlag(FLAGS_resync_seconds));
  controller::ReleaseController& releases = manager.Make<controller::ReleaseController>(
      client, co, [&recorder](const kube::Object& regarding, const rollout::Event& e) {
        recorder.Record(regarding, e.type, e.reason, e.action, e.note);
      });

  // Environments span namespaces, so their controller runs only when Capstan watches
  // all of them (a namespace-scoped operator would write a partial status).
  if (co.watch_namespace.empty()) {
    controller::EnvironmentController::Options envo;
    envo.resync = co.resync;
    envo.informers = &manager.informers();
    manager.Make<controller::EnvironmentController>(client, envo);
  }
  if (!absl::GetFlag(FLAGS_secret_rotation)) return releases;

  // SecretRotation: same namespace, leader election and recorder; its own two
  // workers (rotations are rare, and a waiting rotation requeues, never blocks).
  controller::SecretRotationController::Options so;
  so.resync = co.resync;
  so.database = &postgres;
  // In the Release controller's scope its Releases informer is this one's too.
  so.informers = &manager.informers();
  // Freeze windows: the Environments the Release controller caches anyway.
  so.environment_of = [&releases](const std::string& ns) { return releases.EnvironmentOf(ns, ""); };
  // verify.analysis: the Release controller's analysis gates (one runner).
  so.analysis = &releases.Analysis();
  // One controller per namespace of --secret_namespaces (or one for all).
  std::vector<std::string> scopes = absl::GetFlag(FLAGS_secret_namespaces);
  if (scopes.empty()) scopes.push_back(co.watch_namespace);
  for (const std::string& scope : scopes) {
    if (!co.watch_namespace.empty() && scope != co.watch_namespace) continue;
    so.watch_namespace = scope;
    manager.Make<controller::SecretRotationController>(
        client, so,
        [&recorder](const kube::Object& regarding, const std::string& type,
                    const std::string& reason, const std::string& note) {
          recorder.Record(regarding, type, reason, "Rotate", note);
        });
  }
  return releases;
}

// /readyz once the caches synced; /healthz fails when an informer made no progress (a
// list, an event, a bookmark) for 10 minutes: it would keep the operator deciding from
// stale data (a half-open watch is re-opened after 150 s already, so this means the
// informer is truly stuck).
absl::Status ServeHealth(server::HealthServer& health, controller::Manager& manager) {
  (void)health.AddReadinessCheck("informers-synced", [&manager] { return manager.HasSynced(); });
  (void)health.AddLivenessCheck("informers-progressing",
                                [] { return kube::StalledInformers(absl::Minutes(10)).empty(); });
  RETURN_IF_ERROR(health.Start());
  spdlog::info("serving /healthz /readyz /metrics on port {}", health.port());
  return absl::OkStatus();
}

// One request before the caches start. It says at once, in words, when the API server
// does not answer or does not serve Releases (the informers would only retry with
// backoff), and the TLS session it sets up lets the ~30 connections the informers open
// next resume it instead of each paying a full handshake (measured: start to caches
// synced ~200 -> ~100 ms).
void ProbeReleases(kube::Client& client) {
  kube::ListOptions one;
  one.limit = 1;
  absl::StatusOr<kube::ListPage> probe =
      client.List(kube::resources::Releases(), absl::GetFlag(FLAGS_namespace), one);
  if (!probe.ok()) {
    spdlog::error(
        "cannot list Releases (is the API server reachable, and are Capstan's CRDs "
        "installed? kubectl apply --server-side -f crds/): {}; retrying",
        probe.status().message());
  }
}

// The first list holds whole objects (managedFields and all) for a moment; once every
// cache holds only its projections, give the freed pages back so that RSS shows what
// the caches keep, not the start-up peak. Then again every minute: reconciles parse and
// render JSON, and glibc keeps what they free (measured at 1,000 Releases: 41.6 MiB
// RSS, 32.2 MiB after a trim). A trim costs milliseconds. Stopped and joined when it
// goes out of scope, on every return path.
class MemoryTrimmer {
 public:
  MemoryTrimmer(const controller::ReleaseController& releases, absl::Time started)
      : thread_([this, &releases, started] { Run(releases, started); }) {}
  ~MemoryTrimmer() {
    stop_.Notify();
    thread_.join();
  }

 private:
  void Run(const controller::ReleaseController& releases, absl::Time started) {
    // A thread entry: nothing thrown here may end the process.
    try {
      while (!releases.HasSynced()) {
        if (stop_.WaitForNotificationWithTimeout(absl::Milliseconds(20))) return;
      }
      const absl::Duration synced = absl::Now() - started;
      malloc_trim(0);
      spdlog::info("caches synced in {}", synced);
      while (!stop_.WaitForNotificationWithTimeout(absl::Minutes(1))) malloc_trim(0);
    } catch (const std::exception& e) {
      spdlog::error("memory trimmer stopped: {}", e.what());
    }
  }

  absl::Notification stop_;
  std::thread thread_;  // last: starts once the members it uses exist
};

// The leader elector and the client it renews with.
struct Election {
  std::unique_ptr<kube::Client> client;
  std::unique_ptr<kube::LeaderElector> elector;
};

// Leader election on the flags' Lease: the manager's workers start when this replica
// becomes leader. A replica that lost its lease exits at once, without draining, so
// that no worker acts a moment longer (like kube-controller-manager's fatal log on
// "leaderelection lost"); it restarts clean as a candidate. `stopping` is notified when
// a signal ends the process (then losing the lease is expected).
absl::StatusOr<Election> StartElection(const kube::RestConfig& config, controller::Manager& manager,
                                       const std::string& identity,
                                       const absl::Notification& stopping) {
  kube::LeaderElectionConfig lc;
  lc.lease_namespace = LeaseNamespace(config);
  lc.lease_name = absl::GetFlag(FLAGS_leader_election_id);
  lc.identity = identity;
  lc.on_started_leading = [&manager, identity] {
    spdlog::info("became leader identity={}", identity);
    manager.StartWorkers();
  };
  lc.on_stopped_leading = [&stopping] {
    if (stopping.HasBeenNotified()) return;
    spdlog::error("lost the leader lease; exiting so this replica restarts as a candidate");
    spdlog::default_logger()->flush();
    _exit(1);
  };
  lc.on_new_leader = [](const std::string& who) { spdlog::info("leader is {}", who); };
  // Its own client, so the controllers' rate limit never delays a renewal. Each
  // request gives up within a third of the renew deadline and is never retried by
  // the client (the elector's next attempt is the retry): a hanging API server
  // cannot hold a renew past the deadline (client-go bounds each attempt by it too).
  kube::RestConfig lease_config = config;
  lease_config.timeout =
      std::max(absl::Seconds(1), absl::Floor(lc.renew_deadline / 3, absl::Seconds(1)));
  absl::StatusOr<std::unique_ptr<kube::Transport>> transport =
      kube::NewCppRestTransport(lease_config);
  if (!transport.ok()) {
    return absl::Status(
        transport.status().code(),
        absl::StrCat("cannot create the leader-election client: ", transport.status().message()));
  }
  kube::Client::Options lease_options;
  lease_options.qps = 0;
  lease_options.max_retries = 0;
  Election e;
  e.client = std::make_unique<kube::Client>(std::move(*transport), lease_options);
  absl::StatusOr<std::unique_ptr<kube::LeaderElector>> elector =
      kube::LeaderElector::New(*e.client, std::move(lc));
  if (!elector.ok()) {
    return absl::Status(elector.status().code(),
                        absl::StrCat("leader election: ", elector.status().message()));
  }
  e.elector = std::move(*elector);
  e.elector->Start();
  return e;
}

// Waits for SIGINT or SIGTERM and notifies `stopping`.
void WaitForStop(const sigset_t& signals, absl::Notification& stopping) {
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received signal {}, shutting down", sig);
  stopping.Notify();
}

}  // namespace

int RunOperator() {
  const sigset_t signals = BlockSignalsAndDumps();
  const absl::Time started = absl::Now();
  // Every thread would otherwise get its own malloc arena (each keeps a few MB
  // of freed memory); Capstan's threads mostly wait on I/O, two arenas suffice.
  mallopt(M_ARENA_MAX, 2);
  server::InitCppRestThreads(4);

  absl::StatusOr<kube::RestConfig> config = ClientConfig();
  if (!config.ok()) {
    spdlog::error("cannot configure the API client: {}", config.status().message());
    return 1;
  }
  spdlog::info("using {} (server {})", config->source, config->server);
  absl::StatusOr<std::unique_ptr<kube::Client>> client = kube::Client::FromConfig(*config);
  if (!client.ok()) {
    spdlog::error("cannot create the API client: {}", client.status().message());
    return 1;
  }
  // Events get their own client and so their own rate budget: a burst of
  // Events (1,000 Releases rolling at once) must never delay reconcile writes.
  absl::StatusOr<std::unique_ptr<kube::Client>> event_client = kube::Client::FromConfig(*config);
  if (!event_client.ok()) {
    spdlog::error("cannot create the event client: {}", event_client.status().message());
    return 1;
  }
  const std::string identity = kube::DefaultIdentity();
  kube::EventRecorderOptions eo;
  eo.reporting_instance = identity;
  kube::EventRecorder recorder(**event_client, eo);

  // The PostgreSQL client of spec.target.postgresql: before the manager, which owns the
  // SecretRotation controllers that use it. The manager starts and stops them in order.
  pgsql::PostgresDatabase postgres;
  controller::Manager manager(**client);
  const controller::ReleaseController& releases =
      MakeControllers(manager, **client, recorder, postgres);

  server::HealthServer health(absl::GetFlag(FLAGS_health_address));
  if (absl::Status s = ServeHealth(health, manager); !s.ok()) {
    spdlog::error("cannot serve health and metrics: {}", s.message());
    return 1;
  }
  ProbeReleases(**client);
  manager.StartCaches();
  MemoryTrimmer trimmer(releases, started);

  absl::Notification stopping;
  Election election;
  if (absl::GetFlag(FLAGS_leader_elect)) {
    absl::StatusOr<Election> e = StartElection(*config, manager, identity, stopping);
    if (!e.ok()) {
      spdlog::error("{}", e.status().message());
      return 1;
    }
    election = std::move(*e);
    // Liveness: a leader whose renewals are stuck past the deadline (the watchdog
    // should have ended its term) is restarted by the kubelet.
    (void)health.AddLivenessCheck("leader-election", [&election] {
      return election.elector == nullptr || election.elector->Healthy();
    });
  } else {
    manager.StartWorkers();
  }
  spdlog::info("capstan {} started in {}", kVersion, absl::Now() - started);

  WaitForStop(signals, stopping);
  manager.StopControllers();
  // Releases the Lease: a successor starts at once.
  if (election.elector != nullptr) election.elector->Stop();
  recorder.Flush(absl::Seconds(2));
  manager.StopInformers();
  health.Stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace capstan
