"""Release hooks end to end (spec.hooks): the real control plane runs the Jobs Capstan
creates (kube-controller-manager's Job controller), KWOK plays their pods by image name
(tests/cluster/kwok-stages.yaml): an image containing "exit0" succeeds, "exit1" fails,
anything else keeps running until the test annotates the pod e2e.capstan.dev/exit=0."""
import json

import pytest

import kube


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds()


def hook(image):
    return {"backoffLimit": 0,
            "template": {"spec": {"containers": [{"name": "hook", "image": image}]}}}


def jobs(ns, hook_type):
    return kube.get("jobs", namespace=ns, selector=f"capstan.dev/hook={hook_type}")["items"]


def one_job(ns, hook_type, timeout=60):
    """Waits for the hook's Job; returns it."""
    return kube.wait_until(lambda: (jobs(ns, hook_type) or [None])[0], timeout,
                           what=f"a {hook_type} Job")


def job_pods(ns, job_name):
    return kube.get("pods", namespace=ns, selector=f"batch.kubernetes.io/job-name={job_name}")["items"]


def job_done(ns, name, type_="Complete", timeout=60):
    def check():
        j = kube.get("job", name, ns)
        return j if kube.condition(j, type_).get("status") == "True" else None
    return kube.wait_until(check, timeout, what=f"Job {name} {type_}")


def release_running(ns, image, hooks):
    return kube.release("web", image, replicas=2,
                        service={"ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
                        hooks=hooks)


def let_pod_exit(ns, job_name):
    """The hook's pod (kept running by KWOK) finishes with exit code 0."""
    pod = kube.wait_until(lambda: (job_pods(ns, job_name) or [None])[0], 60,
                          what=f"a pod of Job {job_name}")
    kube.kubectl("-n", ns, "annotate", "pod", pod["metadata"]["name"], "e2e.capstan.dev/exit=0")


def test_pre_rollout_success_gates_the_rollout():
    with kube.running("hooks", "--resync_seconds=1") as (ns, op):
        kube.apply(release_running(ns, "registry.example/web:1",
                                   {"preRollout": hook("registry.example/migrate:hold")}), ns)
        job = one_job(ns, "preRollout")
        name = job["metadata"]["name"]
        r = kube.get_release(ns, "web")
        assert name == f"web-{r['status']['currentRevision']}-pre"
        owner = job["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "Release" and owner["uid"] == r["metadata"]["uid"]
        assert owner["controller"] is True
        # Held while the Job runs: the operator has looked, and no pod of the revision
        # (no Deployment) exists.
        op.looked()
        r = kube.get_release(ns, "web")
        assert r["status"]["phase"] == "Waiting"
        assert kube.condition(r, "Reconciling")["reason"] == "PreRolloutHook"
        assert name in r["status"]["message"]
        assert not kube.exists("deployment", "web", ns)
        assert kube.get("pods", namespace=ns, selector="capstan.dev/release=web")["items"] == []

        let_pod_exit(ns, name)
        done = job_done(ns, name)
        kube.wait_phase(ns, "web", "Ready")
        d = kube.get("deployment", "web", ns)
        # RFC 3339 seconds: the Deployment was created no earlier than the Job completed.
        assert d["metadata"]["creationTimestamp"] >= done["status"]["completionTime"]
        assert len(jobs(ns, "preRollout")) == 1


def test_pre_rollout_failure_leaves_the_old_revision_running_and_names_the_job():
    # No leader election: its lease renewals would be the only writes while idle.
    with kube.running("hooks", "--leader_elect=false", "--resync_seconds=1") as (ns, op):
        kube.apply(release_running(ns, "registry.example/web:1",
                                   {"preRollout": hook("registry.example/migrate-exit0:1")}), ns)
        kube.wait_phase(ns, "web", "Ready")
        before = kube.get("deployment", "web", ns)
        # A new revision whose migration fails.
        kube.kubectl("-n", ns, "patch", "release", "web", "--type=merge", "-p", json.dumps(
            {"spec": {"hooks": {"preRollout": hook("registry.example/migrate-exit1:2")},
                      "template": {"spec": {"containers": [
                          {"name": "app", "image": "registry.example/web:2",
                           "ports": [{"name": "http", "containerPort": 8080}]}]}}}}))
        r = kube.wait_phase(ns, "web", "Degraded")
        name = f"web-{r['status']['currentRevision']}-pre"
        stalled = kube.condition(r, "Stalled")
        assert stalled["status"] == "True" and stalled["reason"] == "HookFailed"
        assert name in stalled["message"] and "failed" in stalled["message"]
        assert kube.condition(kube.get("job", name, ns), "Failed")["status"] == "True"
        warnings = [e for e in kube.events(ns, "HookFailed") if e.get("type") == "Warning"]
        assert any(name in e.get("note", "") for e in warnings), warnings
        # Nothing changed: the old revision runs, its Deployment was not written.
        op.looked()
        after = kube.get("deployment", "web", ns)
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert kube.deployment_image(ns, "web") == "registry.example/web:1"
        assert all(p["spec"]["containers"][0]["image"] == "registry.example/web:1"
                   for p in kube.get("pods", namespace=ns,
                                     selector="capstan.dev/release=web")["items"])
        assert op.writes_while_idle() == 0, "a failed preRollout, seen again, writes nothing"


def test_post_rollout_runs_after_ready():
    with kube.running("hooks") as (ns, op):
        kube.apply(release_running(ns, "registry.example/web:1",
                                   {"postRollout": hook("registry.example/warm-exit0:1")}), ns)
        r = kube.wait_phase(ns, "web", "Ready")
        job = one_job(ns, "postRollout")
        assert job["metadata"]["name"] == f"web-{r['status']['currentRevision']}-post"
        ready_at = kube.condition(kube.get_release(ns, "web"), "Ready")["lastTransitionTime"]
        assert job["metadata"]["creationTimestamp"] >= ready_at
        job_done(ns, job["metadata"]["name"])

        def succeeded():
            c = kube.condition(kube.get_release(ns, "web"), "HooksSucceeded")
            return c if c.get("status") == "True" else None
        kube.wait_until(succeeded, 30, what="HooksSucceeded=True")
        assert len(jobs(ns, "postRollout")) == 1


def test_on_rollback_runs_on_an_automatic_rollback():
    with kube.running("hooks") as (ns, op):
        kube.apply(release_running(ns, "registry.example/web:1",
                                   {"onRollback": hook("registry.example/down-exit0:1")}), ns)
        good = kube.wait_phase(ns, "web", "Ready")["status"]["currentRevision"]
        assert jobs(ns, "onRollback") == []
        kube.set_image(ns, "web", "registry.example/web:crashloop")
        r = kube.wait_phase(ns, "web", "RolledBack")
        failed = r["status"]["failedRevision"]
        assert failed != good and r["status"]["stableRevision"] == good
        job = one_job(ns, "onRollback")
        assert job["metadata"]["name"] == f"web-{failed}-rollback"
        assert job["metadata"]["labels"]["capstan.dev/revision"] == failed
        job_done(ns, job["metadata"]["name"])
        assert kube.deployment_image(ns, "web") == "registry.example/web:1"
        assert len(jobs(ns, "onRollback")) == 1


def test_operator_killed_mid_hook_runs_no_job_twice():
    with kube.Namespace("hooks") as ns:
        op = kube.Operator(f"--namespace={ns}", "--resync_seconds=1").start()
        try:
            kube.apply(release_running(ns, "registry.example/web:1",
                                       {"preRollout": hook("registry.example/migrate:hold"),
                                        "postRollout": hook("registry.example/warm:hold")}), ns)
            pre = one_job(ns, "preRollout")
            op.kill9()
            op = kube.Operator(f"--namespace={ns}", "--resync_seconds=1").start()
            op.looked()
            again = jobs(ns, "preRollout")
            assert [j["metadata"]["uid"] for j in again] == [pre["metadata"]["uid"]]
            assert not kube.exists("deployment", "web", ns)

            let_pod_exit(ns, pre["metadata"]["name"])
            kube.wait_phase(ns, "web", "Ready")
            post = one_job(ns, "postRollout")
            # Killed again while postRollout runs.
            op.kill9()
            op = kube.Operator(f"--namespace={ns}", "--resync_seconds=1").start()
            op.looked()
            let_pod_exit(ns, post["metadata"]["name"])
            job_done(ns, post["metadata"]["name"])
            op.looked()
            for hook_type, first in (("preRollout", pre), ("postRollout", post)):
                found = jobs(ns, hook_type)
                assert [j["metadata"]["uid"] for j in found] == [first["metadata"]["uid"]]
                # One pod each: no Job ran twice.
                assert len(job_pods(ns, first["metadata"]["name"])) == 1
        finally:
            op.stop()
