"""BlueGreen end to end on the real control plane: kubectl apply of a Release, the
real `capstan run`, KWOK pods, the real EndpointSlice controller.

Every test runs a TrafficWatch on the active Service: it follows the Service's
EndpointSlices with a watch (every change, not samples) and the Service itself, and
fails the test if the active Service ever had zero ready endpoints after it first had
some, and counts how often the selector's colour changed (exactly one switch per
promotion)."""
import json
import threading
import time

import pytest

import kube


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds()


class TrafficWatch:
    def __init__(self, ns, service):
        self.lock = threading.Lock()
        self.slices = {}
        self.served = False  # had ready endpoints at least once
        self.zero_moments = []
        self.colors = []  # selector colour after every change of it
        self.slice_watch = kube.Watch(
            f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?watch=true&"
            f"labelSelector=kubernetes.io/service-name={service}", self._on_slice)
        self.service_watch = kube.Watch(
            f"/api/v1/namespaces/{ns}/services?watch=true&fieldSelector=metadata.name={service}",
            self._on_service)

    def _on_slice(self, ev):
        obj = ev["object"]
        name = obj["metadata"]["name"]
        with self.lock:
            if ev["type"] == "DELETED":
                self.slices.pop(name, None)
            else:
                self.slices[name] = sum(
                    1 for e in obj.get("endpoints") or []
                    if e.get("conditions", {}).get("ready", True) is not False)
            ready = sum(self.slices.values())
            if ready > 0:
                self.served = True
            elif self.served:
                self.zero_moments.append((time.time(), ev["type"], name))

    def _on_service(self, ev):
        color = ev["object"]["spec"].get("selector", {}).get("capstan.dev/color")
        with self.lock:
            if not self.colors or self.colors[-1] != color:
                self.colors.append(color)

    def switches(self):
        with self.lock:
            return len(self.colors) - 1

    def ready_endpoints(self):
        with self.lock:
            return sum(self.slices.values())

    def stop(self):
        self.slice_watch.stop()
        self.service_watch.stop()
        assert self.served, "the active Service never had a ready endpoint"
        assert not self.zero_moments, f"zero ready endpoints at {self.zero_moments}"


def bluegreen(name, image, replicas=2, **blue_green):
    spec = {"service": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
            "strategy": {"type": "BlueGreen", "blueGreen": blue_green}}
    return kube.release(name, image, replicas=replicas, **spec)


def selector_color(ns, name):
    return kube.get("service", name, ns)["spec"]["selector"].get("capstan.dev/color")


def replicas(ns, name):
    return kube.get("deployment", name, ns)["spec"].get("replicas")


def ready_on_blue(ns, name, traffic, **blue_green):
    kube.apply(bluegreen(name, "registry.example/web:1", **blue_green), ns)
    kube.kubectl("-n", ns, "wait", "--for=condition=Ready", f"release/{name}", "--timeout=90s")
    kube.wait_until(lambda: traffic.ready_endpoints() == 2, 30, what="2 ready endpoints")
    r = kube.get_release(ns, name)
    assert r["status"]["activeColor"] == "blue"
    assert selector_color(ns, name) == "blue"
    return r


def break_a_green_pod_and_see_traffic_back_on_blue(ns, traffic, how):
    """Once green serves Release web, breaks one of its pods (`how`: crash or unready, as
    tests/cluster/kwok-stages.yaml reads e2e.capstan.dev/break) and waits for the switch back."""
    kube.wait_until(lambda: traffic.ready_endpoints() == 2, 30, what="green serving")
    pod = kube.get("pods", namespace=ns, selector="capstan.dev/color=green")["items"][0]
    kube.kubectl("-n", ns, "annotate", "pod", pod["metadata"]["name"],
                 f"e2e.capstan.dev/break={how}")
    kube.wait_until(lambda: selector_color(ns, "web") == "blue", 30, what="switch back")


def test_full_cycle_auto_promote_scale_down_with_hpa():
    # No lease renewals and a resync every second: the write count below is the
    # reconciler's alone.
    with kube.running("bg", "--leader_elect=false", "--resync_seconds=1") as (ns, op):
        traffic = TrafficWatch(ns, "web")
        body = bluegreen("web", "registry.example/web:1", promotionDelaySeconds=1,
                         scaleDownDelaySeconds=5)
        del body["spec"]["replicas"]
        body["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 4}
        kube.apply(body, ns)
        kube.kubectl("-n", ns, "wait", "--for=condition=Ready", "release/web", "--timeout=90s")
        first = kube.get_release(ns, "web")["status"]["currentRevision"]
        assert kube.get("hpa", "web", ns)["spec"]["scaleTargetRef"]["name"] == "web-blue"
        kube.wait_until(lambda: traffic.ready_endpoints() == 2, 60, what="2 ready endpoints")

        kube.set_image(ns, "web", "registry.example/web:2")
        # The new revision comes up on green at the active count, behind the preview.
        kube.wait_until(lambda: kube.exists("deployment", "web-green", ns) and
                        kube.deployment_image(ns, "web-green") == "registry.example/web:2", 30,
                        what="green")
        kube.wait_until(lambda: selector_color(ns, "web") == "green", 60, what="promotion")
        r = kube.wait_phase(ns, "web", "Ready")
        assert r["status"]["activeColor"] == "green"
        assert r["status"]["currentRevision"] != first
        assert kube.get("hpa", "web", ns)["spec"]["scaleTargetRef"]["name"] == "web-green"
        assert kube.get("service", "web-preview", ns)["spec"]["selector"]["capstan.dev/color"] \
            == "green"
        # The old colour stays for scaleDownDelaySeconds, then goes to zero.
        kube.wait_until(lambda: replicas(ns, "web-blue") == 0, 30, what="blue scaled down")
        r = kube.wait_phase(ns, "web", "Ready")
        assert r["status"]["stableRevision"] == r["status"]["currentRevision"]
        assert "scaleDownAt" not in r["status"]
        assert replicas(ns, "web-green") == 2
        kube.wait_until(lambda: kube.events(ns, "Promoted") and kube.events(ns, "ScaledDown"), 10,
                        what="Promoted and ScaledDown events")
        assert traffic.switches() == 1
        traffic.stop()
        # Converged: resyncs cost no writes.
        assert op.writes_while_idle() == 0, "a converged Release must cost no API writes"


def test_manual_promotion_waits_for_the_named_revision():
    with kube.running("bg", "--resync_seconds=1") as (ns, op):
        traffic = TrafficWatch(ns, "web")
        ready_on_blue(ns, "web", traffic, autoPromote=False, scaleDownDelaySeconds=3)
        kube.set_image(ns, "web", "registry.example/web:2")
        r = kube.wait_phase(ns, "web", "Previewing")
        rev = r["status"]["currentRevision"]
        assert kube.condition(r, "Reconciling")["reason"] == "AwaitingPromotion"
        assert f"capstan.dev/promote={rev}" in r["status"]["message"]
        assert r["status"]["previewColor"] == "green"
        op.looked()
        assert selector_color(ns, "web") == "blue", "no promotion without the annotation"
        kube.kubectl("-n", ns, "annotate", "release", "web", f"capstan.dev/promote={rev}")
        kube.wait_until(lambda: selector_color(ns, "web") == "green", 30, what="promotion")
        kube.wait_phase(ns, "web", "Ready")
        kube.wait_until(lambda: replicas(ns, "web-blue") == 0, 30, what="blue scaled down")
        assert traffic.switches() == 1
        traffic.stop()


def test_failure_before_promotion_never_touches_the_active_service():
    with kube.running("bg") as (ns, op):
        traffic = TrafficWatch(ns, "web")
        ready_on_blue(ns, "web", traffic, scaleDownDelaySeconds=3)
        kube.set_image(ns, "web", "registry.example/web:crashloop")
        r = kube.wait_phase(ns, "web", "Degraded")
        assert r["status"]["failedRevision"] == r["status"]["currentRevision"]
        assert r["status"]["activeColor"] == "blue"
        assert kube.condition(r, "Stalled")["status"] == "True"
        assert "failed in preview on green" in r["status"]["message"], r["status"]["message"]
        kube.wait_until(lambda: kube.events(ns, "PreviewFailed"), 10, what="a PreviewFailed event")
        kube.wait_until(lambda: replicas(ns, "web-green") == 0, 30, what="green scaled down")
        assert selector_color(ns, "web") == "blue"
        assert traffic.switches() == 0
        traffic.stop()


def test_failure_after_the_switch_flips_straight_back():
    with kube.running("bg") as (ns, op):
        traffic = TrafficWatch(ns, "web")
        stable = ready_on_blue(ns, "web", traffic, scaleDownDelaySeconds=120)
        kube.set_image(ns, "web", "registry.example/web:2")
        kube.wait_until(lambda: selector_color(ns, "web") == "green", 60, what="promotion")
        r = kube.wait_phase(ns, "web", "Ready")
        failed = r["status"]["currentRevision"]
        # Green misbehaves once it has traffic: one pod crash-loops.
        break_a_green_pod_and_see_traffic_back_on_blue(ns, traffic, "crash")
        r = kube.wait_phase(ns, "web", "RolledBack")
        assert r["status"]["failedRevision"] == failed
        assert r["status"]["activeColor"] == "blue"
        assert r["status"]["stableRevision"] == stable["status"]["currentRevision"]
        assert "CrashLoopBackOff" in r["status"]["message"]
        svc = kube.get("service", "web", ns)
        assert svc["metadata"]["annotations"]["capstan.dev/failed-revision"] == failed
        kube.wait_until(lambda: kube.events(ns, "SwitchedBack"), 10, what="a SwitchedBack event")
        assert traffic.switches() == 2
        # Not retried: a reconcile later traffic is still on blue.
        n = op.reconciles()
        kube.kubectl("-n", ns, "annotate", "release", "web", "touched=1")
        kube.wait_until(lambda: op.reconciles() > n, 10, what="a reconcile")
        assert selector_color(ns, "web") == "blue"
        _, metrics = op.get("/metrics")
        assert 'capstan_bluegreen_switches_total{kind="switch_back"} 1' in metrics
        traffic.stop()


def test_readiness_loss_after_the_switch_counts_consecutive_checks():
    with kube.running("bg") as (ns, op):
        traffic = TrafficWatch(ns, "web")
        ready_on_blue(ns, "web", traffic, scaleDownDelaySeconds=120, failureThreshold=2)
        kube.set_image(ns, "web", "registry.example/web:2")
        kube.wait_until(lambda: selector_color(ns, "web") == "green", 60, what="promotion")
        break_a_green_pod_and_see_traffic_back_on_blue(ns, traffic, "unready")
        r = kube.wait_phase(ns, "web", "RolledBack")
        assert "consecutive checks" in r["status"]["message"]
        traffic.stop()


def test_abort_in_preview_is_final_and_keeps_traffic():
    with kube.running("bg", "--resync_seconds=1") as (ns, op):
        traffic = TrafficWatch(ns, "web")
        ready_on_blue(ns, "web", traffic, autoPromote=False, scaleDownDelaySeconds=3)
        kube.set_image(ns, "web", "registry.example/web:2")
        kube.wait_phase(ns, "web", "Previewing")
        kube.kubectl("-n", ns, "annotate", "release", "web", "capstan.dev/abort=stop-1")
        r = kube.wait_phase(ns, "web", "Aborted")
        assert r["status"]["lastAbort"] == "stop-1"
        assert r["status"]["failedRevision"] == r["status"]["currentRevision"]
        assert kube.condition(r, "Stalled")["reason"] == "Aborted"
        kube.wait_until(lambda: replicas(ns, "web-green") == 0, 30, what="green scaled down")
        assert kube.wait_phase(ns, "web", "Aborted")
        assert selector_color(ns, "web") == "blue"
        assert traffic.switches() == 0
        traffic.stop()


def test_kill9_before_and_after_the_selector_write_gives_exactly_one_switch():
    with kube.Namespace("bg") as ns:
        op = kube.Operator(f"--namespace={ns}").start()
        traffic = TrafficWatch(ns, "web")
        try:
            ready_on_blue(ns, "web", traffic, autoPromote=False, scaleDownDelaySeconds=5)
            kube.set_image(ns, "web", "registry.example/web:2")
            rev = kube.wait_phase(ns, "web", "Previewing")["status"]["currentRevision"]
            # Just before: the promotion is asked for while no operator runs; the next
            # one's first act is the switch.
            op.kill9()
            kube.kubectl("-n", ns, "annotate", "release", "web", f"capstan.dev/promote={rev}")
            op = kube.Operator(f"--namespace={ns}").start()
            # Just after: kill -9 the moment the selector moved, before status and
            # Events can follow.
            kube.wait_until(lambda: traffic.switches() >= 1, 30, interval=0.01, what="switch")
            op.kill9()
            op = kube.Operator(f"--namespace={ns}").start()
            r = kube.wait_phase(ns, "web", "Ready")
            assert r["status"]["activeColor"] == "green"
            assert r["status"]["currentRevision"] == rev
            kube.wait_until(lambda: replicas(ns, "web-blue") == 0, 30, what="blue scaled down")
            r = kube.wait_phase(ns, "web", "Ready")
            assert r["status"]["stableRevision"] == rev
            assert selector_color(ns, "web") == "green"
            assert traffic.switches() == 1, f"selector colours seen: {traffic.colors}"
            traffic.stop()
        finally:
            op.stop()


def test_strategy_type_cannot_change_in_place():
    with kube.running("bg") as (ns, op):
        kube.apply(kube.release("roll", "registry.example/roll:1",
                                service={"ports": [{"port": 80}]}), ns)
        out = kube.kubectl("-n", ns, "patch", "release", "roll", "--type=merge", "-p",
                           json.dumps({"spec": {"strategy": {"type": "BlueGreen"}}}), check=False)
        assert out.returncode != 0
        assert "strategy.type cannot change on an existing Release" in out.stderr
        bad = bluegreen("nosvc", "registry.example/x:1")
        del bad["spec"]["service"]
        out = kube.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(bad), check=False)
        assert out.returncode != 0
        assert "strategy BlueGreen needs spec.service" in out.stderr


def test_object_metadata_is_applied_changed_and_removed_without_a_rollout():
    # spec.service.metadata / previewMetadata, spec.autoscaling.metadata and
    # spec.disruptionBudget.metadata reach their objects; an edit re-applies only them.
    with kube.running("bg", "--leader_elect=false", "--resync_seconds=1") as (ns, op):
        body = bluegreen("meta", "registry.example/web:1")
        del body["spec"]["replicas"]
        body["spec"]["service"]["type"] = "LoadBalancer"
        body["spec"]["service"]["metadata"] = {
            "labels": {"team": "pay"},
            "annotations": {"example.com/lb-type": "nlb", "example.com/lb-scheme": "internal"}}
        body["spec"]["service"]["previewMetadata"] = {"labels": {"team": "pay-preview"}}
        body["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 3,
                                       "metadata": {"labels": {"scaler": "cpu"}}}
        body["spec"]["disruptionBudget"] = {"maxUnavailable": 1,
                                            "metadata": {"annotations": {"owner": "pay"}}}
        kube.apply(body, ns)
        r = kube.wait_phase(ns, "meta", "Ready")
        revision = r["status"]["currentRevision"]
        svc = kube.get("service", "meta", ns)["metadata"]
        assert svc["labels"]["team"] == "pay"
        assert svc["labels"]["capstan.dev/release"] == "meta"
        assert svc["annotations"]["example.com/lb-type"] == "nlb"
        assert svc["annotations"]["example.com/lb-scheme"] == "internal"
        preview = kube.get("service", "meta-preview", ns)["metadata"]
        assert preview["labels"]["team"] == "pay-preview"
        assert "example.com/lb-type" not in preview.get("annotations", {})
        assert kube.get("hpa", "meta", ns)["metadata"]["labels"]["scaler"] == "cpu"
        assert kube.get("pdb", "meta", ns)["metadata"]["annotations"]["owner"] == "pay"

        # Change one annotation, drop the other and a label: applied, no new revision.
        kube.kubectl("-n", ns, "patch", "release", "meta", "--type=merge", "-p", json.dumps(
            {"spec": {"service": {"metadata": {
                "labels": None,
                "annotations": {"example.com/lb-type": None,
                                "example.com/lb-scheme": "internet-facing"}}}}}))

        def changed():
            m = kube.get("service", "meta", ns)["metadata"]
            a = m.get("annotations", {})
            return (a.get("example.com/lb-scheme") == "internet-facing"
                    and "example.com/lb-type" not in a and "team" not in m["labels"])
        kube.wait_until(changed, 30, what="the Service's metadata changed")
        r = kube.wait_phase(ns, "meta", "Ready")
        assert r["status"]["currentRevision"] == revision
        assert not kube.exists("deployment", "meta-green", ns)
        assert kube.get("service", "meta", ns)["metadata"]["labels"]["capstan.dev/release"] \
            == "meta"
        # Converged: resyncs cost no writes.
        assert op.writes_while_idle() == 0, "a converged Release must cost no API writes"
