"""SecretRotation with spec.target.hook on the real control plane: the set and test
steps are Jobs (KWOK stages by image: "exit0" completes, "exit1" fails), the pending
values are mounted into them read-only and nothing else of the Secret; a failed step
switches nothing and names the step; an existing Job that is not ours is never adopted;
a kill -9 while a step runs resumes with the Job already created."""
import json

import pytest

import kube
from test_secret_rotation import (SecretValues, assert_no_value_leaked, data, env_consumer,
                                  running, secret, srot, stamp, wait_status)

OK = "registry.example/rotate:exit0"
FAIL = "registry.example/rotate:exit1"


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds("secretrotations.capstan.dev")


def step(image, name="step"):
    return {"backoffLimit": 0,
            "template": {"spec": {"containers": [{"name": name, "image": image}]}}}


def hook_rotation(name, secret_name, set_image=OK, test_image=OK, interval="720h"):
    return {
        "apiVersion": "capstan.dev/v1alpha1",
        "kind": "SecretRotation",
        "metadata": {"name": name},
        "spec": {
            "secretName": secret_name,
            "interval": interval,
            "keys": [{"name": "token", "randomBytes": {"length": 32, "encoding": "base64"}},
                     {"name": "client-secret", "randomBytes": {"length": 24, "encoding": "hex"}}],
            "target": {"hook": {"set": step(set_image, "set"), "test": step(test_image, "test")}},
        },
    }


def job(ns, name):
    return kube.get("job", name, ns)


def job_finished(ns, name, condition):
    def check():
        if not kube.exists("job", name, ns):
            return None
        j = job(ns, name)
        for c in j.get("status", {}).get("conditions", []):
            if c["type"] == condition and c["status"] == "True":
                return j
        return None
    return kube.wait_until(check, 90, what=f"Job {name} {condition}")


def assert_step_job(j, ns, rotation_uid, step_name, version):
    meta = j["metadata"]
    assert meta["labels"]["capstan.dev/secret-rotation"] == "api"
    assert meta["labels"]["capstan.dev/rotation-step"] == step_name
    assert meta["labels"]["capstan.dev/rotation-version"] == version
    owner = meta["ownerReferences"][0]
    assert owner["kind"] == "SecretRotation" and owner["uid"] == rotation_uid
    assert owner["controller"] is True
    pod = j["spec"]["template"]["spec"]
    vols = [v for v in pod["volumes"] if v["name"] == "capstan-pending"]
    assert len(vols) == 1, pod["volumes"]
    sv = vols[0]["secret"]
    # Only the pending keys, under the plain key names; nothing else of the Secret.
    assert sv["secretName"] == "api-keys"
    assert sorted((i["key"], i["path"]) for i in sv["items"]) == [
        (".capstan-pending.client-secret", "client-secret"), (".capstan-pending.token", "token")]
    assert sv["defaultMode"] == 0o400
    c = pod["containers"][0]
    assert {"name": "capstan-pending", "mountPath": "/var/run/capstan/pending",
            "readOnly": True} in c["volumeMounts"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["CAPSTAN_ROTATION_STEP"] == step_name
    assert env["CAPSTAN_ROTATION_VERSION"] == version


def test_set_and_test_jobs_complete_then_the_secret_switches():
    with running() as (ns, box):
        watch = SecretValues(ns, "api-keys")
        try:
            kube.apply(env_consumer("app", "api-keys"), ns)
            kube.apply(hook_rotation("api", "api-keys"), ns)
            # The first values go through set and test too (the Secret starts empty).
            wait_status(ns, "api", timeout=120, phase="Ready", currentVersion="1")
            uid = srot(ns, "api")["metadata"]["uid"]
            for s in ("set", "test"):
                assert_step_job(job_finished(ns, f"api-1-{s}", "Complete"), ns, uid, s, "1")
            first = data(ns, "api-keys")
            watch.record_now(secret(ns, "api-keys"))
            assert sorted(first) == ["client-secret", "token"]
            # test started only after set completed.
            assert job(ns, "api-1-test")["metadata"]["creationTimestamp"] >= \
                job(ns, "api-1-set")["status"]["completionTime"]
            before = stamp(ns, "app", "api-keys")

            kube.kubectl("-n", ns, "annotate", "secretrotation", "api", "capstan.dev/rotate=r2")
            st = wait_status(ns, "api", timeout=120, phase="Ready", currentVersion="2")
            for s in ("set", "test"):
                assert_step_job(job_finished(ns, f"api-2-{s}", "Complete"), ns, uid, s, "2")
            second = data(ns, "api-keys")
            watch.record_now(secret(ns, "api-keys"))
            assert second["token"] != first["token"]
            assert not [k for k in second if k.startswith(".capstan-")]
            assert stamp(ns, "app", "api-keys") not in ("", before), "consumer restarted"
            # The Jobs of the earlier rotation go; the last rotation's stay for debugging.
            kube.wait_until(lambda: not kube.exists("job", "api-1-set", ns)
                            and not kube.exists("job", "api-1-test", ns), 60,
                            what="version 1 step Jobs deleted")
            assert kube.exists("job", "api-2-set", ns) and kube.exists("job", "api-2-test", ns)
            assert [h["result"] for h in st["history"]] == ["Succeeded", "Succeeded"]
            started = [e for e in kube.events(ns, "HookStarted")]
            assert len(started) >= 4, started
            _, metrics = box["op"].get("/metrics")
            assert f'capstan_secret_rotations_total{{name="api",namespace="{ns}",' \
                   f'result="succeeded",target="hook"}}' in metrics
        finally:
            watch.stop()
        assert_no_value_leaked(ns, "api", box["op"], watch.all_values())


@pytest.mark.parametrize("failing", ["set", "test"])
def test_a_failed_step_switches_nothing_and_names_the_step(failing):
    with running("--resync_seconds=1") as (ns, box):
        watch = SecretValues(ns, "api-keys")
        try:
            kube.apply(env_consumer("app", "api-keys"), ns)
            kube.apply(hook_rotation("api", "api-keys"), ns)
            wait_status(ns, "api", timeout=120, phase="Ready", currentVersion="1")
            first = data(ns, "api-keys")
            watch.record_now(secret(ns, "api-keys"))
            before = stamp(ns, "app", "api-keys")
            kube.kubectl("-n", ns, "patch", "secretrotation", "api", "--type=merge", "-p",
                         json.dumps({"spec": {"target": {"hook": {failing: step(FAIL, failing)}}}}))
            kube.kubectl("-n", ns, "annotate", "secretrotation", "api", "capstan.dev/rotate=r2")
            st = wait_status(ns, "api", timeout=120, phase="Failed")
            watch.record_now(secret(ns, "api-keys"))
            assert st["reason"] == "HookStepFailed" and st["failedStep"] == failing, st
            assert f"hook step {failing}: Job api-2-{failing} failed" in st["message"], st
            assert st["currentVersion"] == "1"
            ready = kube.condition(srot(ns, "api"), "Ready")
            assert ready["status"] == "False" and ready["reason"] == "HookStepFailed"
            assert st["history"][0]["result"] == "Failed"
            assert st["history"][0]["failedStep"] == failing
            # Nothing switched: the values in use are untouched, the pending ones dropped.
            assert data(ns, "api-keys") == first
            assert stamp(ns, "app", "api-keys") == before
            job_finished(ns, f"api-2-{failing}", "Failed")
            if failing == "set":
                assert not kube.exists("job", "api-2-test", ns), "test never ran"
            else:
                job_finished(ns, "api-2-set", "Complete")
            ev = [e for e in kube.events(ns, "RotationFailed") if e["type"] == "Warning"]
            assert any(f"hook step {failing} failed" in e.get("note", "") for e in ev), ev
            # The failure is final for this rotation: the operator looks again, changes nothing.
            box["op"].looked(2)
            assert data(ns, "api-keys") == first
            _, metrics = box["op"].get("/metrics")
            assert f'capstan_secret_rotations_total{{name="api",namespace="{ns}",' \
                   f'result="failed",target="hook"}} 1' in metrics
        finally:
            watch.stop()
        assert_no_value_leaked(ns, "api", box["op"], watch.all_values())


def test_a_job_that_is_not_ours_is_never_adopted():
    with running() as (ns, box):
        foreign = {"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": "api-1-set", "labels": {"team": "other"}},
                   "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                  "containers": [{"name": "x", "image": OK}]}}}}
        kube.apply(foreign, ns)
        kube.apply(hook_rotation("api", "api-keys"), ns)
        st = wait_status(ns, "api", timeout=60, phase="Stalled")
        assert st["reason"] == "Conflict"
        assert "Job api-1-set" in st["message"] and "not owned" in st["message"], st
        j = job(ns, "api-1-set")
        assert not j["metadata"].get("ownerReferences"), "never adopted"
        assert j["metadata"]["labels"] == {"team": "other"} or \
            "capstan.dev/secret-rotation" not in j["metadata"]["labels"]
        assert not kube.exists("job", "api-1-test", ns)
        assert not [k for k in data(ns, "api-keys") if not k.startswith(".capstan-pending.")]
        # Its owner deletes it: the rotation goes on with a Job of its own.
        kube.kubectl("-n", ns, "delete", "job", "api-1-set", "--cascade=background")
        wait_status(ns, "api", timeout=120, phase="Ready", currentVersion="1")
        owner = job(ns, "api-1-set")["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "SecretRotation"


def test_kill9_while_a_step_runs_resumes_with_the_same_job():
    with kube.Namespace("srothk") as ns:
        first = kube.Operator(f"--namespace={ns}").start()
        op = first
        try:
            # The set step never finishes by itself (no exit stage for this image): the
            # operator is killed while it runs.
            kube.apply(hook_rotation("api", "api-keys", set_image="registry.example/rotate:1"),
                       ns)
            kube.wait_until(lambda: kube.exists("job", "api-1-set", ns), 60,
                            what="set Job created")
            uid = job(ns, "api-1-set")["metadata"]["uid"]
            op.kill9()
            mid = secret(ns, "api-keys")
            assert mid["metadata"]["annotations"]["capstan.dev/rotation-state"] == "Pending"
            pending = mid["data"][".capstan-pending.token"]

            op = kube.Operator(f"--namespace={ns}", "--resync_seconds=1").start()
            op.looked(3)
            assert job(ns, "api-1-set")["metadata"]["uid"] == uid, "observed, not created again"
            assert not kube.exists("job", "api-1-test", ns)
            # The step finishes (its image now exits 0 through the KWOK annotation stage).
            pods = kube.get("pods", namespace=ns, selector="job-name=api-1-set")["items"]
            assert pods, "the set Job has a pod"
            for p in pods:
                kube.kubectl("-n", ns, "annotate", "pod", p["metadata"]["name"],
                             "e2e.capstan.dev/exit=0")
            wait_status(ns, "api", timeout=120, phase="Ready", currentVersion="1")
            assert job(ns, "api-1-set")["metadata"]["uid"] == uid
            assert data(ns, "api-keys")["token"] == pending, "the value written before the kill"
        finally:
            first.stop()
            op.stop()


@pytest.mark.parametrize("hook,message", [
    ({"set": step(OK)}, "test: Required value"),
    ({"set": step(OK), "test": {"template": {"spec": {"containers": []}}}},
     "should have at least 1 items"),
    ({"set": step(OK), "test": step(OK)}, "set either postgresql or hook, not both"),
])
def test_schema_rejects_bad_hook_targets(hook, message):
    with kube.Namespace("srothb") as ns:
        r = hook_rotation("api", "api-keys")
        r["spec"]["target"] = {"hook": hook}
        if "set either" in message:
            r["spec"]["target"]["postgresql"] = {"host": "db", "adminSecretRef": {"name": "a"}}
        p = kube.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(r), check=False)
        assert p.returncode != 0 and message in p.stderr, p.stderr
        assert not kube.exists("secretrotation", "api", ns)
