"""Adoption end to end (issue #17 item 4): a Deployment and Service made with kubectl,
serving 3 ready pods, taken over in place by a Release with spec.adopt: true and the
objects' own consent (annotation capstan.dev/adopt), with a watch on the pods proving
that at no moment fewer than 3 were ready; then rolled like any Release. And the
negative: spec.adopt without the object's consent stalls and touches nothing."""
import threading

import pytest

import kube


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds()


class ReadyWatch:
    """Every change of the pods selected by `selector` (a watch, not samples): the number
    of Ready pods not being deleted after each event, and the Service's ready endpoints.
    Counting starts once `floor` pods were ready; every later moment below it is kept."""

    def __init__(self, ns, selector, service, floor):
        self.lock = threading.Lock()
        self.floor = floor
        self.pods = {}
        self.slices = {}
        self.armed = False
        self.low_moments = []  # (ready pods, event, pod)
        self.zero_endpoints = []
        self.min_ready = None
        self.pod_watch = kube.Watch(
            f"/api/v1/namespaces/{ns}/pods?watch=true&labelSelector={selector}", self._on_pod)
        self.slice_watch = kube.Watch(
            f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?watch=true&"
            f"labelSelector=kubernetes.io/service-name={service}", self._on_slice)

    def _on_pod(self, ev):
        pod = ev["object"]
        name = pod["metadata"]["name"]
        ready = ev["type"] != "DELETED" and "deletionTimestamp" not in pod["metadata"] and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in pod.get("status", {}).get("conditions", []))
        with self.lock:
            self.pods[name] = ready
            n = sum(self.pods.values())
            if n >= self.floor:
                self.armed = True
            if self.armed:
                self.min_ready = n if self.min_ready is None else min(self.min_ready, n)
                if n < self.floor:
                    self.low_moments.append((n, ev["type"], name))

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
            if self.armed and sum(self.slices.values()) == 0:
                self.zero_endpoints.append((ev["type"], name))

    def ready(self):
        with self.lock:
            return sum(self.pods.values())

    def stop(self):
        self.pod_watch.stop()
        self.slice_watch.stop()
        assert self.armed, f"never saw {self.floor} ready pods"
        assert not self.low_moments, f"fewer than {self.floor} ready pods: {self.low_moments}"
        assert not self.zero_endpoints, f"the Service had no ready endpoint: {self.zero_endpoints}"


def kubectl_objects(image, consent):
    """A Deployment (3 replicas, selector app=web) and Service as a team writes them."""
    labels = {"app": "web"}
    annotations = {"capstan.dev/adopt": "web"} if consent else {}
    d = {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "web", "labels": labels, "annotations": annotations},
         "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{
                                   "name": "app", "image": image,
                                   "env": [{"name": "FROM_KUBECTL", "value": "1"}],
                                   "ports": [{"name": "http", "containerPort": 8080}]}]}}}}
    s = {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "web", "annotations": annotations},
         "spec": {"selector": labels,
                  "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    return d, s


def adopting_release(image):
    body = kube.release("web", image, replicas=3,
                        service={"ports": [{"name": "http", "port": 80, "targetPort": "http"}]})
    body["spec"]["adopt"] = True
    return body


def wait_ready_replicas(ns, n):
    """The Deployment's rollout complete (its last status write) with n ready pods."""
    kube.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=90s", timeout=120)
    kube.wait_until(lambda: kube.get("deployment", "web", ns).get("status", {}).get(
        "readyReplicas") == n, 90, what=f"{n} ready replicas")


def test_a_kubectl_deployment_is_adopted_without_a_moment_below_three_ready():
    with kube.running("adopt") as (ns, op):
        d, s = kubectl_objects("registry.example/web:1", consent=False)
        kube.apply(d, ns)
        kube.apply(s, ns)
        wait_ready_replicas(ns, 3)
        # Consent, by someone who may write them (here: the test's kubectl).
        kube.kubectl("-n", ns, "annotate", "deployment", "web", "capstan.dev/adopt=web")
        kube.kubectl("-n", ns, "annotate", "service", "web", "capstan.dev/adopt=web")
        uid_before = kube.get("deployment", "web", ns)["metadata"]["uid"]
        watch = ReadyWatch(ns, "app=web", "web", floor=3)
        try:
            kube.wait_until(lambda: watch.ready() >= 3, 30, what="the watch sees 3 ready pods")
            kube.apply(adopting_release("registry.example/web:2"), ns)
            r = kube.wait_phase(ns, "web", "Ready", timeout=120)

            deployments = kube.get("deployments", namespace=ns)["items"]
            assert [x["metadata"]["name"] for x in deployments] == ["web"], "one Deployment"
            dep = deployments[0]
            assert dep["metadata"]["uid"] == uid_before, "the same object, adopted in place"
            owner = [o for o in dep["metadata"]["ownerReferences"] if o.get("controller")]
            assert [(o["kind"], o["uid"]) for o in owner] == [("Release", r["metadata"]["uid"])]
            assert dep["spec"]["selector"] == {"matchLabels": {"app": "web"}}
            container = dep["spec"]["template"]["spec"]["containers"][0]
            assert container["image"] == "registry.example/web:2"
            assert "env" not in container, "kubectl's env var is gone: the template is the Release's"
            assert dep["spec"]["template"]["metadata"]["labels"]["app"] == "web"
            assert dep["status"]["readyReplicas"] == 3
            svc = kube.get("service", "web", ns)
            assert svc["spec"]["selector"] == {"app": "web"}
            assert svc["metadata"]["ownerReferences"][0]["uid"] == r["metadata"]["uid"]
            adopted = sorted(e["note"] for e in kube.events(ns, "Adopted"))
            assert len(adopted) == 2 and adopted[0].startswith("Deployment web adopted in place")
            assert "Adopted" in kube.kubectl("-n", ns, "describe", "release", "web")

            # Then rolled like any Release.
            kube.set_image(ns, "web", "registry.example/web:3")
            kube.wait_phase(ns, "web", "Ready", timeout=120)
            assert kube.deployment_image(ns, "web") == "registry.example/web:3"
            assert len(kube.get("deployments", namespace=ns)["items"]) == 1
            wait_ready_replicas(ns, 3)
        finally:
            watch.stop()
        print(f"adoption: min ready pods {watch.min_ready} (floor 3)")


def test_adopt_without_the_objects_consent_stalls_and_touches_nothing():
    with kube.running("adopt") as (ns, op):
        d, s = kubectl_objects("registry.example/web:1", consent=False)
        kube.apply(d, ns)
        kube.apply(s, ns)
        wait_ready_replicas(ns, 3)
        before = {k: kube.get(k, "web", ns)["metadata"]["resourceVersion"]
                  for k in ("deployment", "service")}
        kube.apply(adopting_release("registry.example/web:2"), ns)
        r = kube.wait_phase(ns, "web", "Stalled")
        stalled = kube.condition(r, "Stalled")
        assert stalled["reason"] == "Conflict"
        assert "does not consent to adoption" in stalled["message"]
        assert "kubectl annotate deployment web capstan.dev/adopt=web" in stalled["message"]
        after = {k: kube.get(k, "web", ns)["metadata"]["resourceVersion"]
                 for k in ("deployment", "service")}
        assert after == before, "objects not named for adoption are never touched"
        assert not kube.events(ns, "Adopted")
