"""The test cluster is real: Deployments, pods on KWOK nodes, failures on demand,
Services with EndpointSlices. Everything else in e2e relies on this."""
import kube


def pods_of(ns, app):
    return kube.get("pods", namespace=ns, selector=f"app={app}")["items"]


def test_deployment_becomes_available_on_kwok_nodes():
    with kube.Namespace("smoke") as ns:
        kube.apply(kube.deployment("web", "registry.example/web:1.0", replicas=3), ns)
        kube.kubectl("-n", ns, "wait", "--for=condition=Available", "deployment/web",
                     "--timeout=90s")
        pods = pods_of(ns, "web")
        assert len(pods) == 3
        for p in pods:
            assert p["spec"]["nodeName"].startswith("kwok-node-")
            assert p["status"]["phase"] == "Running"
            assert p["status"]["podIP"].startswith("10.244.")


def test_crashloop_image_restarts_and_never_becomes_ready():
    with kube.Namespace("smoke") as ns:
        kube.apply(kube.deployment("crash", "registry.example/web:crashloop"), ns)

        def crashing():
            for p in pods_of(ns, "crash"):
                for cs in p["status"].get("containerStatuses", []):
                    waiting = cs.get("state", {}).get("waiting", {})
                    if waiting.get("reason") == "CrashLoopBackOff" and cs["restartCount"] >= 3:
                        return p
            return None

        pod = kube.wait_until(crashing, 60, what="a CrashLoopBackOff pod")
        ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"][0]
        assert ready["status"] == "False"
        d = kube.get("deployment", "crash", ns)
        assert d["status"].get("availableReplicas", 0) == 0


def test_pullfail_and_neverready_images():
    with kube.Namespace("smoke") as ns:
        kube.apply([kube.deployment("pull", "registry.example/pullfail:1"),
                    kube.deployment("slow", "registry.example/neverready:1")], ns)

        def waiting_reason(app):
            for p in pods_of(ns, app):
                for cs in p["status"].get("containerStatuses", []):
                    return cs.get("state", {}).get("waiting", {}).get("reason")
            return None

        kube.wait_until(lambda: waiting_reason("pull") == "ImagePullBackOff", 60,
                        what="ImagePullBackOff")

        def running_not_ready():
            for p in pods_of(ns, "slow"):
                cs = p["status"].get("containerStatuses", [])
                if p["status"].get("phase") == "Running" and cs and not cs[0]["ready"]:
                    return True
            return False

        kube.wait_until(running_not_ready, 60, what="a running pod that is not ready")


def test_service_gets_ready_endpoint_slices():
    with kube.Namespace("smoke") as ns:
        kube.apply(kube.deployment("api", "registry.example/api:1", replicas=2), ns)
        kube.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
                    "spec": {"selector": {"app": "api"},
                             "ports": [{"port": 80, "targetPort": 8080}]}}, ns)

        def ready_endpoints():
            slices = kube.get("endpointslices", namespace=ns,
                              selector="kubernetes.io/service-name=api")["items"]
            return sum(1 for s in slices for e in s.get("endpoints") or []
                       if e.get("conditions", {}).get("ready"))

        kube.wait_until(lambda: ready_endpoints() == 2, 60, what="2 ready endpoints")
