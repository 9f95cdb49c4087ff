"""SecretRotation spec.verify.analysis end to end: after the consumers restarted and are
healthy, the rotation runs AnalysisTemplates (the Release analysis runner) against a REAL
Prometheus (tests/tools/prometheus_fixture.py) scraping the loopback traffic simulator
(tests/tools/traffic_sim.py), and finishes or restores on the run's verdict.

The simulator stands for the application's authentication errors after the switch: its
service "auth" serves a revision named after the rotation's Secret and new version
(`<secret>-v<version>`, the args `secret` and `version` Capstan gives the template), with
5xx responses standing for failed logins."""
import hashlib
import json
import os
import sys

import pytest

import kube
from test_secret_rotation import (SecretValues, assert_no_value_leaked, data, env_consumer,
                                  rotation, running, secret, srot, stamp, wait_status)

sys.path.insert(0, os.path.join(kube.SOURCE_DIR, "tests", "tools"))
from prometheus_fixture import PrometheusServer  # noqa: E402
from traffic_sim import TrafficSim  # noqa: E402

LOG_DIR = os.environ.get("CAPSTAN_CLUSTER_DIR")
AUTH_ERRORS = ('sum(rate(http_requests_total{service="auth",'
               'revision="{{args.secret}}-v{{args.version}}",code=~"5.."}[10s])) or vector(0)')


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds("secretrotations.capstan.dev", "analysistemplates.capstan.dev",
                      "clusteranalysistemplates.capstan.dev", "analysisruns.capstan.dev")


@pytest.fixture(scope="module")
def sim():
    s = TrafficSim("auth").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def prom(sim):
    p = PrometheusServer([f"127.0.0.1:{sim.port}"], log_dir=LOG_DIR).start()
    yield p
    p.close()
    assert p.proc.poll() is not None, "prometheus stopped"


def auth_template(prom, count=3):
    return {"apiVersion": "capstan.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "auth-errors"},
            "spec": {"args": [{"name": "secret"}, {"name": "version"}],
                     "metrics": [{"name": "auth-errors", "interval": "1s", "count": count,
                                  "failureLimit": 0, "successCondition": "result[0] == 0",
                                  "provider": {"prometheus": {"address": prom.url,
                                                              "query": AUTH_ERRORS,
                                                              "timeout": 5}}}]}}


def serve(sim, prom, revision, error_ratio):
    """The simulator serves `revision`; waits until Prometheus has two scrapes of it."""
    sim.set(revision, error_ratio=error_ratio)
    q = f'count_over_time(http_requests_total{{service="auth",revision="{revision}"}}[10s])'
    kube.wait_until(lambda: prom.query(q) and float(prom.query(q)[0]["value"][1]) >= 2, 30,
                    what=f"prometheus has two scrapes of revision {revision}")


def verified_rotation(name, secret_name):
    return rotation(name, secret_name, "720h",
                    keys=[{"name": "jwt-key", "randomBytes": {"length": 32}}],
                    onFailure={"action": "Restore", "healthTimeout": "60s"},
                    verify={"analysis": {"templates": [{"templateName": "auth-errors"}]}})


def start(ns, sim, prom, error_ratio):
    """A consumer and a verified rotation at version 1; the simulator already serves the
    version 2 the next rotation will verify. Returns (secret name, values at version 1)."""
    secret_name = f"keys-{kube.random_suffix()}"  # the simulator outlives tests
    serve(sim, prom, f"{secret_name}-v2", error_ratio)
    kube.apply(auth_template(prom), ns)
    kube.apply(env_consumer("api", secret_name, replicas=2), ns)
    kube.apply(verified_rotation("keys", secret_name), ns)
    wait_status(ns, "keys", phase="Ready", currentVersion="1")
    kube.kubectl("-n", ns, "rollout", "status", "deployment/api", "--timeout=60s")
    return secret_name, data(ns, secret_name)


def test_analysis_passes_and_the_rotation_finishes(sim, prom):
    with running() as (ns, box):
        secret_name, original = start(ns, sim, prom, error_ratio=0.0)
        watch = SecretValues(ns, secret_name)
        try:
            watch.record_now(secret(ns, secret_name))
            kube.kubectl("-n", ns, "annotate", "secretrotation", "keys", "capstan.dev/rotate=1")
            st = wait_status(ns, "keys", timeout=90, phase="Ready", currentVersion="2")
            rotated = data(ns, secret_name)
            assert rotated["jwt-key"] != original["jwt-key"]
            assert not any(k.startswith(".capstan-") for k in rotated)
            run = kube.get("analysisrun", "keys-v2-verify", ns)
            assert run["status"]["phase"] == "Successful"
            m = run["status"]["metricResults"][0]
            assert (m["name"], m["count"], m["successful"]) == ("auth-errors", 3, 3)
            owner = run["metadata"]["ownerReferences"][0]
            assert owner["kind"] == "SecretRotation"
            assert owner["uid"] == srot(ns, "keys")["metadata"]["uid"]
            # The args Capstan gave the template: the query asked for this Secret's version 2.
            assert {"name": "version", "value": "2"} in run["spec"]["args"]
            assert {"name": "secret", "value": secret_name} in run["spec"]["args"]
            assert st["history"][0]["result"] == "Succeeded"
            started = kube.events(ns, "VerificationStarted")
            assert started and "keys-v2-verify" in started[0]["note"]
            assert kube.events(ns, "Rotated")
            # The consumers were restarted with version 2 before the analysis measured.
            uid = srot(ns, "keys")["metadata"]["uid"]
            assert stamp(ns, "api", secret_name) == \
                hashlib.sha256(f"{uid}/2".encode()).hexdigest()[:16]
        finally:
            watch.stop()
        assert_no_value_leaked(ns, "keys", box["op"], watch.all_values())


def test_analysis_fails_and_the_secret_holds_the_old_values_again(sim, prom):
    with running() as (ns, box):
        secret_name, original = start(ns, sim, prom, error_ratio=1.0)
        watch = SecretValues(ns, secret_name)
        try:
            watch.record_now(secret(ns, secret_name))
            kube.kubectl("-n", ns, "annotate", "secretrotation", "keys", "capstan.dev/rotate=1")
            st = wait_status(ns, "keys", timeout=90, phase="Failed")
            assert st["reason"] == "VerificationFailed"
            assert st["failedStep"] == "verify"
            assert "keys-v2-verify" in st["message"] and "metric auth-errors" in st["message"]
            assert st["currentVersion"] == "1"
            assert data(ns, secret_name) == original, "every key back to its old value"
            run = kube.get("analysisrun", "keys-v2-verify", ns)
            assert run["status"]["phase"] == "Failed"
            ev = kube.events(ns, "RotationFailed")
            assert ev and ev[0]["type"] == "Warning"
            assert "metric auth-errors" in ev[0]["note"]
            h = st["history"][0]
            assert (h["result"], h["failedStep"]) == ("Failed", "verify")
            # The consumers restart again with the restored version (id 1).
            uid = srot(ns, "keys")["metadata"]["uid"]
            restored = hashlib.sha256(f"{uid}/1".encode()).hexdigest()[:16]
            kube.wait_until(lambda: stamp(ns, "api", secret_name) == restored, 30,
                            what="api restarted with the restored version")
            # The Secret was at version 2 while the analysis ran (the watch saw it).
            assert any(d.get("jwt-key") not in (None, original["jwt-key"])
                       for _, d in watch.seen_states())
            _, metrics = box["op"].get("/metrics")
            assert f'capstan_secret_rotations_total{{name="keys",namespace="{ns}",' \
                   f'result="failed",target="none"}} 1' in metrics
        finally:
            watch.stop()
        assert_no_value_leaked(ns, "keys", box["op"], watch.all_values())


def test_kill9_while_verifying_resumes_the_same_run(sim, prom):
    """The run is named from the version and found again: a restarted operator neither
    starts a second run nor counts a measurement twice."""
    with running() as (ns, box):
        secret_name, original = start(ns, sim, prom, error_ratio=0.0)
        kube.apply(auth_template(prom, count=8), ns)
        kube.kubectl("-n", ns, "annotate", "secretrotation", "keys", "capstan.dev/rotate=1")
        st = wait_status(ns, "keys", timeout=90, reason="Verifying")
        assert "keys-v2-verify" in st["message"]
        kube.wait_until(
            lambda: (kube.get("analysisrun", "keys-v2-verify", ns).get("status", {})
                     .get("metricResults") or [{}])[0].get("count", 0) >= 2, 30,
            what="two measurements")
        box["op"].kill9()
        op2 = kube.Operator(f"--namespace={ns}").start()
        box["all"].append(op2)
        box["op"] = op2
        wait_status(ns, "keys", timeout=90, phase="Ready", currentVersion="2")
        runs = json.loads(kube.kubectl("-n", ns, "get", "analysisrun", "-o", "json"))["items"]
        assert [r["metadata"]["name"] for r in runs] == ["keys-v2-verify"]
        m = runs[0]["status"]["metricResults"][0]
        assert (m["count"], m["successful"]) == (8, 8), "none lost, none counted twice"
        assert data(ns, secret_name)["jwt-key"] != original["jwt-key"]
