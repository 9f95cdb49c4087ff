"""Release end to end: a user applies Release YAML with kubectl against the real
control plane, and `capstan run` (the real binary) keeps it. Each test has its own
namespace and its own operator watching only that namespace."""
import json

import pytest

import kube


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds()


def test_create_becomes_ready_with_owned_objects():
    with kube.running("rel") as (ns, op):
        kube.apply(kube.release("web", "registry.example/web:1", replicas=3,
                                service={"ports": [{"name": "http", "port": 80,
                                                    "targetPort": "http"}]},
                                disruptionBudget={"minAvailable": 2}), ns)
        kube.kubectl("-n", ns, "wait", "--for=condition=Ready", "release/web", "--timeout=90s")
        r = kube.get_release(ns, "web")
        assert r["status"]["phase"] == "Ready"
        assert r["status"]["readyText"] == "3/3"
        assert r["status"]["stableRevision"] == r["status"]["currentRevision"]
        assert kube.condition(r, "Stalled")["status"] == "False"
        assert kube.condition(r, "Reconciling")["status"] == "False"
        d = kube.get("deployment", "web", ns)
        owner = d["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "Release" and owner["uid"] == r["metadata"]["uid"]
        assert owner["controller"] is True
        assert d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "capstan"
        assert d["metadata"]["labels"]["capstan.dev/release"] == "web"
        svc = kube.get("service", "web", ns)
        assert svc["spec"]["selector"]["capstan.dev/release"] == "web"
        pdb = kube.get("poddisruptionbudget", "web", ns)
        assert pdb["spec"]["minAvailable"] == 2
        assert len(kube.get("controllerrevisions", namespace=ns)["items"]) == 1
        # Printer columns, as `kubectl get rel` shows them.
        out = kube.kubectl("-n", ns, "get", "rel", "web")
        assert "RollingUpdate" in out and "Ready" in out and "3/3" in out


def test_update_rolls_out_a_new_revision():
    with kube.running("rel") as (ns, op):
        kube.apply(kube.release("api", "registry.example/api:1"), ns)
        first = kube.wait_phase(ns, "api", "Ready")["status"]["currentRevision"]
        kube.set_image(ns, "api", "registry.example/api:2")
        r = kube.wait_phase(ns, "api", "Ready")
        assert r["status"]["currentRevision"] != first
        assert r["status"]["stableRevision"] == r["status"]["currentRevision"]
        assert kube.deployment_image(ns, "api") == "registry.example/api:2"
        assert len(kube.get("controllerrevisions", namespace=ns)["items"]) == 2
        assert [h["phase"] for h in r["status"]["history"]][:2] == ["Ready", "Superseded"]


def test_history_keeps_revision_history_limit_entries():
    # More than the 10 entries the history was once cut at, as the CRD allows.
    limit = 12
    with kube.running("rel") as (ns, op):
        kube.apply(kube.release("hist", "registry.example/hist:0", replicas=1,
                                revisionHistoryLimit=limit), ns)
        kube.wait_phase(ns, "hist", "Ready")
        for i in range(1, limit + 2):
            kube.set_image(ns, "hist", f"registry.example/hist:{i}")
            kube.wait_phase(ns, "hist", "Ready")
        history = kube.get_release(ns, "hist")["status"]["history"]
        assert len(history) == limit
        # Newest first; the oldest revisions (images :0 and :1) are the ones dropped.
        assert [h["images"] for h in history] == [
            [f"registry.example/hist:{i}"] for i in range(limit + 1, 1, -1)]
        assert [h["phase"] for h in history] == ["Ready"] + ["Superseded"] * (limit - 1)
        # A lowered limit cuts the history on the next rollout.
        kube.kubectl("-n", ns, "patch", "release", "hist", "--type=merge", "-p",
                     json.dumps({"spec": {"revisionHistoryLimit": 3,
                                          "template": {"spec": {"containers": [
                                              {"name": "app",
                                               "image": "registry.example/hist:99"}]}}}}))
        r = kube.wait_phase(ns, "hist", "Ready")
        assert [h["images"] for h in r["status"]["history"]] == [
            ["registry.example/hist:99"], [f"registry.example/hist:{limit + 1}"],
            [f"registry.example/hist:{limit}"]]


def test_crashloop_rolls_back_and_is_not_retried_until_asked():
    with kube.running("rel") as (ns, op):
        kube.apply(kube.release("shop", "registry.example/shop:1", replicas=2), ns)
        stable = kube.wait_phase(ns, "shop", "Ready")["status"]["currentRevision"]
        kube.set_image(ns, "shop", "registry.example/shop:crashloop")
        r = kube.wait_phase(ns, "shop", "RolledBack")
        failed = r["status"]["currentRevision"]
        assert r["status"]["failedRevision"] == failed
        assert r["status"]["stableRevision"] == stable
        assert kube.condition(r, "Stalled")["status"] == "True"
        assert kube.condition(r, "Ready")["status"] == "False"
        assert "CrashLoopBackOff" in r["status"]["message"]
        kube.wait_until(lambda: kube.deployment_image(ns, "shop") == "registry.example/shop:1", 30,
                        what="the stable image back on the Deployment")
        kube.kubectl("-n", ns, "rollout", "status", "deployment/shop", "--timeout=60s")
        assert kube.events(ns, "RolledBack"), "a RolledBack event"
        # Not retried: several reconciles later the Deployment still runs the stable image.
        n = op.reconciles()
        kube.kubectl("-n", ns, "annotate", "release", "shop", "touched=1")
        kube.wait_until(lambda: op.reconciles() > n, 10, what="a reconcile")
        assert kube.deployment_image(ns, "shop") == "registry.example/shop:1"
        assert kube.get_release(ns, "shop")["status"]["phase"] == "RolledBack"
        # A retry is asked for without editing spec, and fails again the same way.
        kube.kubectl("-n", ns, "annotate", "release", "shop", "capstan.dev/retry=1")
        kube.wait_until(lambda: kube.get_release(ns, "shop")["status"].get("lastRetry") == "1", 30,
                        what="retry consumed")
        r = kube.wait_phase(ns, "shop", "RolledBack")
        assert r["status"]["failedRevision"] == failed
        # A new spec is a new revision and rolls out.
        kube.set_image(ns, "shop", "registry.example/shop:2")
        r = kube.wait_phase(ns, "shop", "Ready")
        assert r["status"].get("failedRevision", "") == ""
        assert kube.deployment_image(ns, "shop") == "registry.example/shop:2"


def test_image_pull_failure_rolls_back():
    with kube.running("rel") as (ns, op):
        kube.apply(kube.release("pull", "registry.example/pull:1"), ns)
        kube.wait_phase(ns, "pull", "Ready")
        kube.set_image(ns, "pull", "registry.example/pullfail:2")
        r = kube.wait_phase(ns, "pull", "RolledBack")
        assert "ImagePullBackOff" in r["status"]["message"]


def test_progress_deadline_rolls_back():
    with kube.running("rel") as (ns, op):
        kube.apply(kube.release("slow", "registry.example/slow:1",
                                rollback={"progressDeadlineSeconds": 10}), ns)
        kube.wait_phase(ns, "slow", "Ready")
        kube.set_image(ns, "slow", "registry.example/neverready:2")
        r = kube.wait_phase(ns, "slow", "RolledBack", timeout=120)
        assert "no progress within 10s" in r["status"]["message"]
        kube.wait_until(lambda: kube.deployment_image(ns, "slow") == "registry.example/slow:1", 30,
                        what="stable image restored")


def test_first_revision_failing_reports_failed_and_touches_nothing():
    with kube.running("rel") as (ns, op):
        kube.apply(kube.release("bad", "registry.example/bad:crashloop"), ns)
        r = kube.wait_phase(ns, "bad", "Degraded")
        assert kube.condition(r, "Stalled")["status"] == "True"
        assert "no stable revision" in r["status"]["message"]
        assert kube.deployment_image(ns, "bad") == "registry.example/bad:crashloop"


def test_autoscaled_release_never_writes_replicas():
    with kube.running("rel") as (ns, op):
        kube.apply(kube.release("auto", "registry.example/auto:1",
                                autoscaling={"minReplicas": 2, "maxReplicas": 5}), ns)
        kube.wait_phase(ns, "auto", "Ready")
        hpa = kube.get("hpa", "auto", ns)
        assert hpa["spec"]["scaleTargetRef"]["name"] == "auto"
        d = kube.get("deployment", "auto", ns)
        for mf in d["metadata"].get("managedFields", []):
            if mf["manager"] == "capstan":
                assert "f:replicas" not in json.dumps(mf.get("fieldsV1", {}).get("f:spec", {}))
        # Someone (the HPA) scales the Deployment: Capstan leaves the count alone.
        kube.kubectl("-n", ns, "scale", "deployment/auto", "--replicas=4")
        kube.set_image(ns, "auto", "registry.example/auto:2")
        kube.wait_phase(ns, "auto", "Ready")
        assert kube.get("deployment", "auto", ns)["spec"]["replicas"] == 4


def test_drift_is_repaired():
    with kube.running("rel") as (ns, op):
        kube.apply(kube.release("drift", "registry.example/drift:1"), ns)
        kube.wait_phase(ns, "drift", "Ready")
        kube.kubectl("-n", ns, "set", "image", "deployment/drift", "app=registry.example/evil:6")
        kube.wait_until(lambda: kube.deployment_image(ns, "drift") == "registry.example/drift:1",
                        30, what="the image put back")


def test_unowned_deployment_is_a_conflict_and_untouched():
    with kube.running("rel") as (ns, op):
        kube.apply(kube.deployment("mine", "registry.example/theirs:1"), ns)
        before = kube.get("deployment", "mine", ns)
        kube.apply(kube.release("mine", "registry.example/ours:1"), ns)
        r = kube.wait_phase(ns, "mine", "Stalled")
        assert kube.condition(r, "Stalled")["reason"] == "Conflict"
        assert "Deployment mine" in r["status"]["message"]
        after = kube.get("deployment", "mine", ns)
        assert after["metadata"].get("ownerReferences") is None
        assert kube.deployment_image(ns, "mine") == "registry.example/theirs:1"
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert kube.events(ns, "Conflict")


def test_deleted_release_is_garbage_collected():
    with kube.running("rel") as (ns, op):
        kube.apply(kube.release("gone", "registry.example/gone:1",
                                service={"ports": [{"port": 80}]}), ns)
        kube.wait_phase(ns, "gone", "Ready")
        kube.kubectl("-n", ns, "delete", "release", "gone", "--wait=true")
        kube.wait_until(lambda: not kube.exists("deployment", "gone", ns)
                        and not kube.exists("service", "gone", ns), 60,
                        what="owned objects garbage-collected")


def test_converged_release_costs_zero_writes():
    with kube.running("rel", "--leader_elect=false", "--resync_seconds=1") as (ns, op):
        kube.apply(kube.release("calm", "registry.example/calm:1",
                                service={"ports": [{"port": 80, "targetPort": 8080}]},
                                disruptionBudget={"maxUnavailable": 1}), ns)
        kube.wait_phase(ns, "calm", "Ready")
        assert op.writes_while_idle() == 0, "a converged Release must cost no API writes"


def test_operator_killed_mid_rollout_converges_without_duplicates():
    with kube.Namespace("rel") as ns:
        op = kube.Operator(f"--namespace={ns}").start()
        try:
            kube.apply(kube.release("k9", "registry.example/k9:1", replicas=4), ns)
            before = kube.wait_phase(ns, "k9", "Ready")["status"].get("currentRevision")
            kube.set_image(ns, "k9", "registry.example/k9:2")

            # KWOK readies pods at once, so the Progressing phase can be over between two
            # polls: a new current revision also says the rollout has started.
            def started():
                st = kube.get_release(ns, "k9")["status"]
                return st.get("phase") == "Progressing" or st.get("currentRevision") != before

            kube.wait_until(started, 30, what="rollout in flight")
            op.kill9()
            op = kube.Operator(f"--namespace={ns}").start()
            r = kube.wait_phase(ns, "k9", "Ready")
            assert kube.deployment_image(ns, "k9") == "registry.example/k9:2"
            revs = kube.get("controllerrevisions", namespace=ns)["items"]
            assert len(revs) == 2, [c["metadata"]["name"] for c in revs]
            assert sorted(c["revision"] for c in revs) == [1, 2]
            assert r["status"]["stableRevision"] == r["status"]["currentRevision"]
        finally:
            op.stop()


@pytest.mark.parametrize("spec,message", [
    ({"replicas": 2, "autoscaling": {"minReplicas": 1, "maxReplicas": 3}}, "autoscaling"),
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}, "minReplicas"),
    ({"strategy": {"type": "Canary"}}, "Unsupported value"),
    ({"replicas": -1}, "replicas"),
])
def test_schema_rejects_bad_releases_with_a_clear_message(spec, message):
    with kube.Namespace("bad") as ns:
        body = kube.release("bad", "registry.example/x:1")
        body["spec"].update(spec)
        p = kube.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body), check=False)
        assert p.returncode != 0
        assert message in p.stderr, p.stderr
        assert not kube.exists("release", "bad", ns)


def test_invalid_spec_found_by_the_controller_is_stalled_and_touches_nothing():
    with kube.running("rel") as (ns, op):
        kube.apply(kube.release("val", "registry.example/val:1"), ns)
        kube.wait_phase(ns, "val", "Ready")
        # A reserved label in the pod template passes the schema but not the controller.
        kube.kubectl("-n", ns, "patch", "release", "val", "--type=merge", "-p", json.dumps(
            {"spec": {"template": {"metadata": {"labels": {"capstan.dev/revision": "x"}},
                                   "spec": {"containers": [{"name": "app",
                                                            "image": "registry.example/val:2"}]}}}}))
        r = kube.wait_phase(ns, "val", "Stalled")
        assert kube.condition(r, "Stalled")["reason"] == "InvalidSpec"
        assert "capstan.dev/" in r["status"]["message"]
        assert kube.deployment_image(ns, "val") == "registry.example/val:1"
        assert kube.events(ns, "InvalidSpec")
