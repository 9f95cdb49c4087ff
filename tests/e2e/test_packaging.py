"""Packaging end to end: the Helm chart and the kustomize base in manifests/ against the
real API server, and a least-privilege proof: the real operator binary, holding only a
token of the chart's ServiceAccount, runs a full Release lifecycle with no forbidden
errors."""
import json
import os
import subprocess
import uuid

import pytest
import yaml

import kube

SRC = os.environ.get("CAPSTAN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(SRC, "charts", "capstan")
MANIFESTS = os.path.join(SRC, "manifests")
RBAC_TEMPLATES = ["templates/serviceaccount.yaml", "templates/clusterrole.yaml",
                  "templates/clusterrolebinding.yaml", "templates/role.yaml",
                  "templates/rolebinding.yaml"]

# The ClusterRole must grant exactly this: each rule is something the code calls.
#   releases list/watch:            the Release informer (controller/release_controller.cc,
#                                   make(res::Releases())); Releases are never fetched one by one.
#   releases/status patch:          server-side apply of status (ao.subresource = "status").
#   deployments get/list/watch:     informer + conflict check (client_.Get on a cache miss);
#               patch (merge):      BlueGreen sets a colour's replica count;
#               create/patch:       server-side apply (an apply that creates is authorized as
#                                   create too, checked on the real API server); never deleted
#                                   by Capstan (garbage collection follows the owner reference).
#   services, horizontalpodautoscalers, poddisruptionbudgets: as deployments, plus delete
#                                   when the Release stops asking for one (`remove`).
#   ingresses, httproutes:          as services (spec.ingress, spec.route); the HTTPRoute
#                                   informer starts once discovery shows the Gateway API.
#   controllerrevisions list/watch: informer (read through the cache, no direct GET);
#               create/patch/delete: one per revision by server-side apply, pruned past
#                                   revisionHistoryLimit.
#   pods list/watch:                the pod informer that detects crash loops / pull failures.
#   endpointslices list/watch:      BlueGreen reads the preview Service's ready endpoints.
#   events create/patch:            kube/event_recorder.cc (Create, MergePatch for a series).
#   environments list/watch:        the Environment informer (controller/environment_controller.cc).
#   environments/status patch:      server-side apply of Environment status.
#   namespaces list/watch:          namespace labels for Environment namespaceSelector.
#   releaseapprovals list/watch:    the Release reconciler counts approvals of a held change;
#                    delete:        approvals of a state rolled past or of a recreated Release.
#   analysistemplates, clusteranalysistemplates list/watch: informers (controller/analysis_gate.cc).
#   analysisruns get/list/watch/create: informer, a direct read of a run just created, one
#                                   create per gate and revision (deleted by garbage collection).
#   analysisruns/status patch:      conditional merge patch of a run's status per measurement.
#   jobs get/list/watch/create:     the job provider: a label-selected informer, a direct read
#                                   of a Job just created, one create per measurement.
#   configmaps get:                 the CA an https provider names from a ConfigMap.
#   secretrotations list/watch:     the SecretRotation informer (controller/secret_rotation_controller.cc).
#   secretrotations/status patch:   server-side apply of status.
#   secrets get/list/watch/create/patch: the label-selected Secret informer (list/watch), one
#                                   direct read on a cache miss (get), creating a missing Secret
#                                   (create), each rotation step as a conditional merge patch
#                                   (patch). Never update or delete. Only with
#                                   secretRotation.enabled (off by default) and no
#                                   secretRotation.namespaces (then Roles per namespace).
EXPECTED_CLUSTER_RULES = {
    ("capstan.dev", "releases"): {"list", "watch"},
    ("capstan.dev", "releases/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    ("autoscaling", "horizontalpodautoscalers"): {"get", "list", "watch", "create", "patch",
                                                  "delete"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("networking.k8s.io", "ingresses"): {"get", "list", "watch", "create", "patch", "delete"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "list", "watch", "create", "patch",
                                                  "delete"},
    ("apps", "controllerrevisions"): {"list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"list", "watch"},
    ("discovery.k8s.io", "endpointslices"): {"list", "watch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("capstan.dev", "environments"): {"list", "watch"},
    ("capstan.dev", "environments/status"): {"patch"},
    ("", "namespaces"): {"list", "watch"},
    ("capstan.dev", "releaseapprovals"): {"list", "watch", "delete"},
    ("capstan.dev", "analysistemplates"): {"list", "watch"},
    ("capstan.dev", "clusteranalysistemplates"): {"list", "watch"},
    ("capstan.dev", "analysisruns"): {"get", "list", "watch", "create"},
    ("capstan.dev", "analysisruns/status"): {"patch"},
    # create/get/list/watch: analysis job metrics and hook Jobs; delete: hook retention.
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "configmaps"): {"get"},
}
# With secretRotation.enabled (off by default: the default install reads no Secret).
ROTATION_RULES = {
    ("capstan.dev", "secretrotations"): {"list", "watch"},
    ("capstan.dev", "secretrotations/status"): {"patch"},
    ("", "secrets"): {"get", "list", "watch", "create", "patch"},
    ("apps", "statefulsets"): {"list", "watch", "patch"},
    ("apps", "daemonsets"): {"list", "watch", "patch"},
    # Release consumers: the restart annotation on a Release's metadata (list + watch are
    # the Release controller's).
    ("capstan.dev", "releases"): {"list", "watch", "patch"},
}
# With secretRotation.namespaces these move from the ClusterRole to a Role per namespace.
NAMESPACED_ROTATION = {("", "secrets"), ("apps", "statefulsets"), ("apps", "daemonsets")}
# Where the code names each resource (a rule for a resource the code never names fails).
CODE_REFERENCES = {
    "releases": ("src/controller/release_controller.cc", "res::Releases()"),
    "releases/status": ("src/controller/release_controller.cc", 'ao.subresource = "status"'),
    "deployments": ("src/controller/release_controller.cc", "res::Deployments()"),
    "services": ("src/controller/release_controller.cc", "res::Services()"),
    "horizontalpodautoscalers": ("src/controller/release_controller.cc",
                                 "res::HorizontalPodAutoscalers()"),
    "poddisruptionbudgets": ("src/controller/release_controller.cc",
                             "res::PodDisruptionBudgets()"),
    "ingresses": ("src/controller/release_controller.cc", "res::Ingresses()"),
    "httproutes": ("src/controller/release_controller.cc", "res::HttpRoutes()"),
    "controllerrevisions": ("src/controller/release_controller.cc",
                            "res::ControllerRevisions()"),
    "pods": ("src/controller/release_controller.cc", "res::Pods()"),
    "endpointslices": ("src/controller/release_controller.cc", "res::EndpointSlices()"),
    "events": ("src/kube/event_recorder.cc", "resources::Events()"),
    "environments": ("src/controller/environment_controller.cc", "res::Environments()"),
    "environments/status": ("src/controller/environment_controller.cc",
                            'ao.subresource = "status"'),
    "namespaces": ("src/controller/environment_controller.cc", "res::Namespaces()"),
    "releaseapprovals": ("src/controller/release_controller.cc", "res::ReleaseApprovals()"),
    "analysistemplates": ("src/controller/analysis_gate.cc", "ares::AnalysisTemplates()"),
    "clusteranalysistemplates": ("src/controller/analysis_gate.cc",
                                 "ares::ClusterAnalysisTemplates()"),
    "analysisruns": ("src/controller/analysis_gate.cc", "ares::AnalysisRuns()"),
    "analysisruns/status": ("src/controller/analysis_gate.cc", 'patch, "status"'),
    "jobs": ("src/controller/analysis_gate.cc", "ares::Jobs()"),
    "configmaps": ("src/controller/analysis_gate.cc", "kube::resources::ConfigMaps()"),
    "secretrotations": ("src/controller/secret_rotation_controller.cc",
                        "res::SecretRotations()"),
    "secretrotations/status": ("src/controller/secret_rotation_controller.cc",
                               'ao.subresource = "status"'),
    "secrets": ("src/controller/secret_rotation_controller.cc", "res::Secrets()"),
    "statefulsets": ("src/controller/secret_rotation_controller.cc", "res::StatefulSets()"),
    "daemonsets": ("src/controller/secret_rotation_controller.cc", "res::DaemonSets()"),
}
# Leader election, in the operator's namespace only (kube/leader_election.cc: Get,
# Create on first start, Update to acquire/renew/release).
EXPECTED_ROLE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}


def run(*args, input=None, check=True, timeout=180):
    p = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout


def helm(*args, **kw):
    return run("helm", *args, **kw)


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def render(release="capstan", namespace="capstan-system", *extra):
    return helm("template", release, CHART, "--namespace", namespace, *extra)


def canon(d):
    return json.dumps(d, sort_keys=True)


def rules_of(obj):
    out = {}
    for r in obj["rules"]:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                out.setdefault((g, res), set()).update(r["verbs"])
    return out


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds()


def test_helm_lint():
    out = helm("lint", CHART, "--strict")
    assert "0 chart(s) failed" in out


def test_chart_crds_are_identical_to_top_level_crds():
    top = sorted(f for f in os.listdir(os.path.join(SRC, "crds")) if f.endswith(".yaml"))
    chart = sorted(f for f in os.listdir(os.path.join(CHART, "crds")) if f.endswith(".yaml"))
    assert top == chart
    for f in top:
        with open(os.path.join(SRC, "crds", f), "rb") as a, \
                open(os.path.join(CHART, "crds", f), "rb") as b:
            assert a.read() == b.read(), f"charts/capstan/crds/{f} differs from crds/{f}"


def test_render_is_accepted_by_the_api_server():
    with kube.Namespace("pkg") as ns:
        text = render("capstan", ns, "--include-crds")
        kinds = sorted(d["kind"] for d in docs(text))
        assert kinds == sorted(["CustomResourceDefinition"] * 7 + [
                                "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                "RoleBinding", "Deployment", "Service", "PodDisruptionBudget",
                                # approval-policy.yaml: who approved is recorded by admission
                                "ClusterRole", "MutatingAdmissionPolicy",
                                "MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy",
                                "ValidatingAdmissionPolicyBinding",
                                # release-policy.yaml: the author and the break-glass user are
                                # recorded by admission; only break-glass groups declare one
                                "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
                                "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
                                "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"])
        out = kube.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server",
                           "-f", "-", input=text)
        assert out.count("serverside-applied (server dry run)") == len(kinds), out
        # The optional ServiceMonitor renders, and a single replica drops the PDB.
        sm = docs(render("capstan", ns, "--set", "serviceMonitor.enabled=true"))
        assert "ServiceMonitor" in [d["kind"] for d in sm]
        one = docs(render("capstan", ns, "--set", "replicas=1"))
        assert "PodDisruptionBudget" not in [d["kind"] for d in one]


def test_kustomize_base_equals_the_chart_render():
    built = docs(kube.kubectl("kustomize", MANIFESTS))
    rendered = docs(render("capstan", "capstan-system", "--include-crds"))
    rendered.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": "capstan-system"}})
    assert len(built) == len(rendered)
    assert {canon(d) for d in built} == {canon(d) for d in rendered}, (
        "manifests/ drifted from charts/capstan: run tests/packaging/render-manifests.sh")


def test_deployment_security_and_probes():
    dep = next(d for d in docs(render()) if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in c["env"]


def test_helm_install_and_uninstall():
    with kube.Namespace("pkg") as ns:
        name = f"capstan-{uuid.uuid4().hex[:6]}"
        helm("install", name, CHART, "--namespace", ns)
        try:
            kube.kubectl("-n", ns, "wait", "--for=condition=Available", f"deployment/{name}",
                         "--timeout=90s")
            dep = kube.get("deployment", name, ns)
            assert dep["status"].get("readyReplicas") == 2
            for kind, n, namespaced in [("serviceaccount", name, True), ("role",
                                        f"{name}-leader-election", True),
                                        ("rolebinding", f"{name}-leader-election", True),
                                        ("service", f"{name}-metrics", True),
                                        ("poddisruptionbudget", name, True),
                                        ("clusterrole", name, False),
                                        ("clusterrolebinding", name, False)]:
                assert kube.exists(kind, n, ns if namespaced else None), f"{kind}/{n}"
        finally:
            helm("uninstall", name, "--namespace", ns, "--wait", "--timeout", "90s")
        for kind, n, namespaced in [("deployment", name, True), ("serviceaccount", name, True),
                                    ("service", f"{name}-metrics", True),
                                    ("poddisruptionbudget", name, True),
                                    ("clusterrole", name, False),
                                    ("clusterrolebinding", name, False)]:
            kube.wait_until(lambda: not kube.exists(kind, n, ns if namespaced else None), 30,
                            what=f"{kind}/{n} removed by helm uninstall")
        # CRDs in crds/ are never deleted by Helm.
        assert kube.exists("crd", "releases.capstan.dev")
        assert kube.exists("crd", "secretrotations.capstan.dev")


def test_cluster_role_grants_only_what_the_code_uses():
    objs = docs(render())
    cr = next(d for d in objs if d["kind"] == "ClusterRole"
              and d["metadata"]["name"] == "capstan")
    role = next(d for d in objs if d["kind"] == "Role")
    text = yaml.safe_dump([cr, role])
    assert "'*'" not in text and '"*"' not in text, "no wildcards"
    assert all("resourceNames" not in r and "nonResourceURLs" not in r for r in cr["rules"])
    assert rules_of(cr) == EXPECTED_CLUSTER_RULES, "the default install holds no Secret access"
    assert rules_of(role) == EXPECTED_ROLE_RULES
    assert "secrets" not in json.dumps([d for d in objs if d["kind"] in ("Role", "ClusterRole")])
    # SecretRotation on: its grants, cluster-wide.
    on = next(d for d in docs(render("capstan", "capstan-system", "--set",
                                     "secretRotation.enabled=true"))
              if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "capstan")
    assert rules_of(on) == {**EXPECTED_CLUSTER_RULES, **ROTATION_RULES}
    # ... or Secrets only in the listed namespaces (Roles), and analysis credentials `get`
    # only where asked; the operator watches Secrets only there.
    scoped = docs(render("capstan", "capstan-system", "--set", "secretRotation.enabled=true",
                         "--set", "secretRotation.namespaces={pay,shop}",
                         "--set", "analysis.secretNamespaces={shop,metrics}"))
    cr = next(d for d in scoped if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "capstan")
    assert rules_of(cr) == {**EXPECTED_CLUSTER_RULES, **{k: v for k, v in ROTATION_RULES.items()
                                                          if k not in NAMESPACED_ROTATION}}
    secret_roles = {d["metadata"]["namespace"]: rules_of(d) for d in scoped
                    if d["kind"] == "Role" and d["metadata"]["name"] == "capstan-secrets"}
    rotation_role = {k: ROTATION_RULES[k] for k in NAMESPACED_ROTATION}
    assert secret_roles == {"pay": rotation_role, "shop": rotation_role,
                            "metrics": {("", "secrets"): {"get"}}}
    assert {d["metadata"]["namespace"] for d in scoped if d["kind"] == "RoleBinding"
            and d["metadata"]["name"] == "capstan-secrets"} == {"pay", "shop", "metrics"}
    dep = next(d for d in scoped if d["kind"] == "Deployment")
    assert "--secret_namespaces=pay,shop" in dep["spec"]["template"]["spec"]["containers"][0][
        "args"]
    for (_, res) in {**EXPECTED_CLUSTER_RULES, **ROTATION_RULES}:
        path, needle = CODE_REFERENCES[res]
        with open(os.path.join(SRC, path)) as f:
            assert needle in f.read(), f"{res}: {needle} not in {path}"


def token_kubeconfig(ns, sa, path):
    admin = json.loads(kube.kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster = admin["clusters"][0]["cluster"]
    server = cluster["server"]
    ca = cluster.get("certificate-authority-data")
    if not ca:
        import base64
        with open(cluster["certificate-authority"], "rb") as f:
            ca = base64.b64encode(f.read()).decode()
    token = kube.kubectl("create", "token", sa, "-n", ns, "--duration=1h").strip()
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "sa",
           "clusters": [{"name": "c", "cluster": {"server": server,
                                                  "certificate-authority-data": ca}}],
           "users": [{"name": "sa", "user": {"token": token}}],
           "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa",
                                                   "namespace": ns}}]}
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    os.chmod(path, 0o600)
    return path


def test_operator_runs_a_full_lifecycle_with_only_the_chart_rbac():
    with kube.Namespace("lp") as ns:
        name = f"capstan-{uuid.uuid4().hex[:6]}"
        show = [a for t in RBAC_TEMPLATES for a in ("--show-only", t)]
        kube.kubectl("apply", "-f", "-", input=render(name, ns, "--set",
                                                      "secretRotation.enabled=true", *show))
        cfg = token_kubeconfig(ns, name, os.path.join(
            os.environ.get("CAPSTAN_CLUSTER_DIR", "/tmp"), f"{name}.kubeconfig"))

        def as_sa(*args, check=True):
            return kube.kubectl("--kubeconfig", cfg, *args, check=check)

        # Cluster-wide reads (the default, watch-all mode) are granted; Secrets may be read,
        # created and patched (SecretRotation) but never updated or deleted.
        for res in ["releases.capstan.dev", "deployments.apps", "pods",
                    "secretrotations.capstan.dev", "secrets"]:
            assert as_sa("auth", "can-i", "watch", res, "--all-namespaces").strip() == "yes"
        for verb in ("delete", "update"):
            assert as_sa("auth", "can-i", verb, "secrets", "-n", ns,
                         check=False).stdout.strip() == "no"
        assert as_sa("auth", "can-i", "update", "leases", "-n", "default",
                     check=False).stdout.strip() == "no"

        # --namespace keeps this operator off other tests' Releases; leader election on
        # (the default) exercises the Role in ns.
        op = kube.Operator(f"--kubeconfig={cfg}", f"--leader_election_namespace={ns}",
                           f"--namespace={ns}", log_name=f"{name}-operator").start()
        try:
            def wait_phase(phase, timeout=90):
                def check():
                    r = kube.get("release", "shop", ns)
                    st = r.get("status", {})
                    if (st.get("phase") == phase
                            and st.get("observedGeneration") == r["metadata"]["generation"]):
                        return r
                    return None
                return kube.wait_until(check, timeout, what=f"release shop phase {phase}")

            def patch(ops):
                kube.kubectl("-n", ns, "patch", "release", "shop", "--type=json",
                             "-p", json.dumps(ops))

            image = "/spec/template/spec/containers/0/image"
            rel = kube.release("shop", "registry.example/shop:1", replicas=2,
                               service={"ports": [{"name": "http", "port": 80,
                                                   "targetPort": "http"}]},
                               disruptionBudget={"maxUnavailable": 1})
            kube.apply(rel, ns)
            wait_phase("Ready")
            assert kube.exists("service", "shop", ns)
            assert kube.exists("poddisruptionbudget", "shop", ns)
            lease = next(a for a in op.args if a.startswith("--leader_election_id="))
            assert kube.exists("lease", lease.split("=", 1)[1], ns)

            patch([{"op": "replace", "path": image, "value": "registry.example/shop:2"},
                   {"op": "remove", "path": "/spec/disruptionBudget"}])
            wait_phase("Ready")
            kube.wait_until(lambda: not kube.exists("poddisruptionbudget", "shop", ns), 30,
                            what="the PDB deleted")

            patch([{"op": "replace", "path": image,
                    "value": "registry.example/shop:crashloop"}])
            r = wait_phase("RolledBack")
            assert kube.condition(r, "Stalled")["status"] == "True"
            kube.wait_until(lambda: kube.get("deployment", "shop", ns)["spec"]["template"]
                            ["spec"]["containers"][0]["image"] == "registry.example/shop:2",
                            30, what="the stable image back on the Deployment")
            events = kube.get("events.events.k8s.io", namespace=ns)["items"]
            assert any(e.get("reason") == "RolledBack" for e in events)

            # A SecretRotation cycle with the same RBAC: create the Secret, rotate it,
            # restart its consumer, write status.
            consumer = kube.deployment("reader", "registry.example/reader:1")
            consumer["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [
                {"secretRef": {"name": "reader-keys"}}]
            kube.apply([consumer, {
                "apiVersion": "capstan.dev/v1alpha1", "kind": "SecretRotation",
                "metadata": {"name": "reader"},
                "spec": {"secretName": "reader-keys", "interval": "720h",
                         "keys": [{"name": "token", "randomBytes": {"length": 32}}]}}], ns)

            def srot_status(**want):
                def check():
                    st = kube.get("secretrotation", "reader", ns).get("status", {})
                    return st if all(st.get(k) == v for k, v in want.items()) else None
                return kube.wait_until(check, 60, what=f"secretrotation {want}")
            srot_status(phase="Ready", currentVersion="1")
            kube.kubectl("-n", ns, "annotate", "secretrotation", "reader",
                         "capstan.dev/rotate=1")
            srot_status(phase="Ready", currentVersion="2")
            tmpl = kube.get("deployment", "reader", ns)["spec"]["template"]["metadata"]
            assert "secret-version.capstan.dev/reader-keys" in tmpl.get("annotations", {})
        finally:
            op.stop()
        logs = op.logs()
        assert "forbidden" not in logs.lower(), logs[-4000:]
        assert "RolledBack" in logs or "rolled back" in logs.lower(), logs[-4000:]
