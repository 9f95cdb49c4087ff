"""How traffic enters, end to end: spec.ingress renders a networking.k8s.io/v1 Ingress
and spec.route a Gateway API HTTPRoute, both owned by the Release and pointing at its
active Service. The Gateway API CRDs come from their published Go module (pinned in
tests/e2e/gateway-api/go.mod, the standard channel's config/crd/standard); the first
route test removes them to show a Release asking for a route on a cluster without them
is Stalled, then installs them and the same Release recovers."""
import json
import os
import subprocess

import pytest

import kube

GATEWAY_CRDS = ("gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants",
                "backendtlspolicies")


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds()


def gateway_api_crd_dir():
    """config/crd/standard of the pinned sigs.k8s.io/gateway-api (go mod download)."""
    here = os.path.join(kube.SOURCE_DIR, "tests", "e2e", "gateway-api")
    out = subprocess.run(["go", "mod", "download", "-json", "sigs.k8s.io/gateway-api"], cwd=here,
                         capture_output=True, text=True, timeout=600, check=True).stdout
    return os.path.join(json.loads(out)["Dir"], "config", "crd", "standard")


def install_gateway_api():
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", gateway_api_crd_dir())
    kube.kubectl("wait", "--for=condition=Established",
                 "crd/httproutes.gateway.networking.k8s.io", "--timeout=60s")


def remove_gateway_api():
    kube.kubectl("delete", "crd", "--ignore-not-found", "--wait=true",
                 *[f"{c}.gateway.networking.k8s.io" for c in GATEWAY_CRDS], timeout=180)


SERVICE = {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}


def patch_spec(ns, name, spec):
    kube.kubectl("-n", ns, "patch", "release", name, "--type=merge", "-p",
                 json.dumps({"spec": spec}))


def test_ingress_with_tls_is_owned_diffed_and_removed():
    with kube.running("ing", "--leader_elect=false", "--resync_seconds=1") as (ns, op):
        kube.apply(kube.release("shop", "registry.example/shop:1", replicas=2, service=SERVICE,
                                ingress={"className": "nginx",
                                         "metadata": {"annotations": {
                                             "cert-manager.io/cluster-issuer": "le"}},
                                         "hosts": [{"host": "shop.example.com",
                                                    "paths": [{"path": "/api"}]},
                                                   {"host": "www.example.com"}],
                                         "tls": [{"secretName": "shop-tls",
                                                  "hosts": ["shop.example.com"]}]}), ns)
        r = kube.wait_phase(ns, "shop", "Ready")
        ing = kube.wait_until(lambda: kube.get("ingress", "shop", ns)
                              if kube.exists("ingress", "shop", ns) else None, 60,
                              what="Ingress shop")
        owner = ing["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "Release" and owner["uid"] == r["metadata"]["uid"]
        assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "le"
        assert ing["spec"]["ingressClassName"] == "nginx"
        assert ing["spec"]["tls"] == [{"secretName": "shop-tls", "hosts": ["shop.example.com"]}]
        rules = ing["spec"]["rules"]
        assert [x["host"] for x in rules] == ["shop.example.com", "www.example.com"]
        assert rules[0]["http"]["paths"] == [{"path": "/api", "pathType": "Prefix", "backend": {
            "service": {"name": "shop", "port": {"name": "http"}}}}]
        assert rules[1]["http"]["paths"][0]["path"] == "/"
        # The API server's defaults in the live Ingress are no drift: nothing to write.
        assert op.writes_while_idle() == 0

        # Editing the Ingress part re-applies the Ingress only: no new revision.
        revision = r["status"]["currentRevision"]
        patch_spec(ns, "shop", {"ingress": {"hosts": [{"host": "shop.example.com"}],
                                            "metadata": {"annotations": {
                                                "cert-manager.io/cluster-issuer": None,
                                                "team": "shop"}}}})
        kube.wait_until(lambda: [x["host"] for x in kube.get("ingress", "shop", ns)["spec"]["rules"]]
                        == ["shop.example.com"], 60, what="Ingress with one host")
        ing = kube.get("ingress", "shop", ns)
        assert "cert-manager.io/cluster-issuer" not in ing["metadata"].get("annotations", {})
        assert ing["metadata"]["annotations"]["team"] == "shop"
        r = kube.wait_phase(ns, "shop", "Ready")
        assert r["status"]["currentRevision"] == revision
        assert len(kube.get("controllerrevisions", namespace=ns)["items"]) == 1

        # Someone edits the Ingress by hand: Capstan puts its fields back.
        kube.kubectl("-n", ns, "patch", "ingress", "shop", "--type=json", "-p", json.dumps(
            [{"op": "replace", "path": "/spec/rules/0/host", "value": "evil.example.com"}]))
        kube.wait_until(lambda: kube.get("ingress", "shop", ns)["spec"]["rules"][0]["host"]
                        == "shop.example.com", 60, what="Ingress host restored")

        # Dropping spec.ingress deletes the Ingress.
        kube.kubectl("-n", ns, "patch", "release", "shop", "--type=json", "-p",
                     json.dumps([{"op": "remove", "path": "/spec/ingress"}]))
        kube.wait_until(lambda: not kube.exists("ingress", "shop", ns), 60, what="Ingress deleted")


def test_bluegreen_ingress_follows_the_switch_and_serves_a_preview_host():
    with kube.running("ingbg", "--leader_elect=false", "--resync_seconds=1") as (ns, op):
        kube.apply(kube.release("pay", "registry.example/pay:1", replicas=2, service=SERVICE,
                                strategy={"type": "BlueGreen",
                                          "blueGreen": {"scaleDownDelaySeconds": 0}},
                                ingress={"hosts": [{"host": "pay.example.com"}],
                                         "previewHost": "preview.pay.example.com"}), ns)
        kube.wait_phase(ns, "pay", "Ready")
        ing = kube.wait_until(lambda: kube.get("ingress", "pay", ns)
                              if kube.exists("ingress", "pay", ns) else None, 60,
                              what="Ingress pay")
        backends = {x["host"]: x["http"]["paths"][0]["backend"]["service"]["name"]
                    for x in ing["spec"]["rules"]}
        assert backends == {"pay.example.com": "pay", "preview.pay.example.com": "pay-preview"}
        assert kube.get("service", "pay", ns)["spec"]["selector"]["capstan.dev/color"] == "blue"
        before = ing["metadata"]["resourceVersion"]

        kube.set_image(ns, "pay", "registry.example/pay:2")
        kube.wait_until(lambda: kube.get("service", "pay", ns)["spec"]["selector"]
                        ["capstan.dev/color"] == "green", 120, what="switch to green")
        kube.wait_phase(ns, "pay", "Ready", timeout=120)
        op.looked()
        # Traffic moved with the Service's selector; the Ingress was never written.
        assert kube.get("ingress", "pay", ns)["metadata"]["resourceVersion"] == before


def test_route_stalls_without_gateway_api_then_is_applied_once_installed():
    remove_gateway_api()
    with kube.running("route", "--leader_elect=false", "--resync_seconds=1") as (ns, op):
        kube.apply(kube.release("web", "registry.example/web:1", replicas=2, service=SERVICE,
                                strategy={"type": "BlueGreen"}), ns)
        kube.wait_phase(ns, "web", "Ready")
        deployment = kube.get("deployment", "web-blue", ns)

        patch_spec(ns, "web", {"route": {
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["web.example.com"],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}},
                                   {"headers": [{"name": "x-canary", "value": "1"}]}]}],
            "previewHostnames": ["preview.web.example.com"]}})
        r = kube.wait_phase(ns, "web", "Stalled")
        stalled = kube.condition(r, "Stalled")
        assert stalled["status"] == "True" and stalled["reason"] == "GatewayAPIMissing"
        assert "Gateway API CRDs" in stalled["message"]
        assert kube.events(ns, "GatewayAPIMissing")
        # The running workload was left as it was.
        assert kube.get("deployment", "web-blue", ns)["metadata"]["resourceVersion"] == \
            deployment["metadata"]["resourceVersion"]

        install_gateway_api()
        # Discovery is asked again at most every 30 s while the answer is no.
        kube.wait_phase(ns, "web", "Ready", timeout=120)
        route = kube.wait_until(lambda: kube.get("httproute", "web", ns)
                                if kube.exists("httproute", "web", ns) else None, 60,
                                what="HTTPRoute web")
        assert route["metadata"]["ownerReferences"][0]["uid"] == r["metadata"]["uid"]
        spec = route["spec"]
        assert spec["parentRefs"][0]["name"] == "public"
        assert spec["parentRefs"][0]["sectionName"] == "https"
        assert spec["hostnames"] == ["web.example.com"]
        assert spec["rules"][0]["matches"][0]["path"] == {"type": "PathPrefix", "value": "/api"}
        assert spec["rules"][0]["backendRefs"][0]["name"] == "web"
        assert spec["rules"][0]["backendRefs"][0]["port"] == 80
        preview = kube.get("httproute", "web-preview", ns)
        assert preview["spec"]["hostnames"] == ["preview.web.example.com"]
        assert preview["spec"]["rules"][0]["backendRefs"][0]["name"] == "web-preview"
        # The CRD's defaults (parentRef group/kind, backendRef kind/weight, header match
        # type) are no drift.
        assert op.writes_while_idle() == 0

        # Without previewHostnames the preview route goes; without spec.route both go.
        kube.kubectl("-n", ns, "patch", "release", "web", "--type=json", "-p", json.dumps(
            [{"op": "remove", "path": "/spec/route/previewHostnames"}]))
        kube.wait_until(lambda: not kube.exists("httproute", "web-preview", ns), 60,
                        what="preview HTTPRoute deleted")
        assert kube.exists("httproute", "web", ns)
        kube.kubectl("-n", ns, "patch", "release", "web", "--type=json", "-p",
                     json.dumps([{"op": "remove", "path": "/spec/route"}]))
        kube.wait_until(lambda: not kube.exists("httproute", "web", ns), 60,
                        what="HTTPRoute deleted")
