"""Analysis end to end: a REAL Prometheus (Debian's package, tests/tools/prometheus_fixture.py)
scrapes a loopback traffic simulator (tests/tools/traffic_sim.py) every second; Releases name
AnalysisTemplates whose queries read the simulator's per-revision counters, and the real
operator rolls forward, back, pauses or switches traffic on what Prometheus answers.

The revision a Release will run is computed the way Capstan computes it (`capstan render`),
so the simulator serves that revision's traffic before the rollout starts."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

import kube

sys.path.insert(0, os.path.join(kube.SOURCE_DIR, "tests", "tools"))
from prometheus_fixture import PrometheusServer  # noqa: E402
from traffic_sim import TrafficSim  # noqa: E402

LOG_DIR = os.environ.get("CAPSTAN_CLUSTER_DIR")
ERROR_RATE = ('sum(rate(http_requests_total{service="web",revision="{{revision}}",code=~"5.."}[10s]))'
              ' / sum(rate(http_requests_total{service="web",revision="{{revision}}"}[10s]))')


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds("analysistemplates.capstan.dev", "clusteranalysistemplates.capstan.dev",
                      "analysisruns.capstan.dev")


@pytest.fixture(scope="module")
def sim():
    s = TrafficSim("web").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def prom(sim):
    p = PrometheusServer([f"127.0.0.1:{sim.port}"], log_dir=LOG_DIR).start()
    yield p
    p.close()
    assert p.proc.poll() is not None, "prometheus stopped"


def revision_of(body):
    """The revision Capstan will run for this Release (pod label capstan.dev/revision)."""
    out = subprocess.run([os.environ.get("CAPSTAN_BIN", "capstan"), "render", "-f", "-"],
                         input=json.dumps(body), capture_output=True, text=True, check=True)
    for d in yaml.safe_load_all(out.stdout):
        if d and d.get("kind") == "Deployment":
            return d["spec"]["template"]["metadata"]["labels"]["capstan.dev/revision"]
    raise AssertionError("no Deployment in capstan render's output")


def serve(sim, prom, body, error_ratio=0.0, latency=0.05):
    """Simulates traffic of the revision `body` will run and waits until Prometheus has
    enough of it for a 10 s rate (two scrapes)."""
    rev = revision_of(body)
    sim.set(rev, error_ratio=error_ratio, latency=latency)
    q = f'count_over_time(http_requests_total{{revision="{rev}",code="200"}}[10s])'
    kube.wait_until(lambda: prom.query(q) and float(prom.query(q)[0]["value"][1]) >= 2, 30,
                    what=f"prometheus has two scrapes of revision {rev}")
    return rev


def template(prom, name="error-rate", **metric):
    m = {"name": "error-rate", "interval": "1s", "successCondition": "result[0] < 0.05",
         "provider": {"prometheus": {"address": prom.url, "query": ERROR_RATE, "timeout": 5}}}
    m.update(metric)
    return {"apiVersion": "capstan.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": name}, "spec": {"metrics": [m]}}


def web(image, templates=("error-rate",), bake=0, args=None):
    analysis = {"templates": [{"templateName": t} for t in templates], "bakeSeconds": bake}
    if args:
        analysis["args"] = args
    return kube.release("web", image, replicas=2,
                        strategy={"type": "RollingUpdate",
                                  "rollingUpdate": {"analysis": analysis}})


def run_of(ns, rev, gate="rolling"):
    return kube.get("analysisrun", f"web-{rev}-{gate}", ns)


def metric(run, name="error-rate"):
    return next(r for r in run["status"]["metricResults"] if r["name"] == name)


def test_healthy_analysis_becomes_ready_and_explains_itself(sim, prom):
    tag = kube.random_suffix()  # a revision of its own: the simulator outlives tests
    with kube.running("an") as (ns, op):
        kube.apply(template(prom, count=3), ns)
        body = web(f"registry.example/web:1-{tag}")
        rev = serve(sim, prom, body)
        kube.apply(body, ns)
        r = kube.wait_phase(ns, "web", "Ready", timeout=60)
        assert r["status"]["stableRevision"] == rev
        run = run_of(ns, rev)
        assert run["status"]["phase"] == "Successful"
        m = metric(run)
        assert (m["count"], m["successful"], m["failed"]) == (3, 3, 0)
        assert all(x["value"].startswith("[") for x in m["measurements"])
        owner = run["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "Release" and owner["uid"] == r["metadata"]["uid"]
        out = kube.kubectl("-n", ns, "get", "analysisrun")
        assert "Successful" in out and "rolling" in out and "1/1 successful" in out
        assert kube.events(ns, "AnalysisSuccessful")
        _, metrics = op.get("/metrics")
        assert 'capstan_analysis_runs_total{phase="Successful"} 1' in metrics
        assert 'capstan_analysis_measurements_total{phase="Successful",provider="prometheus"} 3' \
            in metrics


def test_error_rate_over_threshold_rolls_back(sim, prom):
    tag = kube.random_suffix()  # a revision of its own: the simulator outlives tests
    with kube.running("an") as (ns, op):
        kube.apply(template(prom, failureLimit=1), ns)
        v1 = web(f"registry.example/web:1-{tag}", bake=2)
        stable = serve(sim, prom, v1)
        kube.apply(v1, ns)
        kube.wait_phase(ns, "web", "Ready", timeout=60)
        # A bake long enough that the failures, not the end of the bake, decide.
        v2 = web(f"registry.example/web:2-{tag}", bake=30)
        bad = serve(sim, prom, v2, error_ratio=0.3)
        kube.apply(v2, ns)
        r = kube.wait_phase(ns, "web", "RolledBack", timeout=60)
        assert r["status"]["failedRevision"] == bad
        assert r["status"]["stableRevision"] == stable
        msg = r["status"]["message"]
        value = re.search(r"error-rate \[([0-9.]+)\]", msg)
        assert value and abs(float(value.group(1)) - 0.3) < 0.01, msg
        assert "successCondition result[0] < 0.05 does not hold" in msg, msg
        assert "2 of 2 measurements failed" in msg, msg
        kube.wait_until(lambda: kube.deployment_image(ns, "web") == f"registry.example/web:1-{tag}", 30,
                        what="the stable image back")
        run = run_of(ns, bad)
        assert run["status"]["phase"] == "Failed"
        assert metric(run)["failed"] == 2
        assert kube.events(ns, "AnalysisFailed") and kube.events(ns, "RolledBack")
        # The failed revision is not retried.
        assert kube.get_release(ns, "web")["status"]["phase"] == "RolledBack"


def test_prometheus_stopped_mid_analysis_counts_errors_then_rolls_back(sim):
    tag = kube.random_suffix()  # a revision of its own: the simulator outlives tests
    own = PrometheusServer([f"127.0.0.1:{sim.port}"], log_dir=LOG_DIR).start()
    try:
        with kube.running("an") as (ns, op):
            kube.apply(template(own, count=60, consecutiveErrorLimit=2), ns)
            v1 = web(f"registry.example/web:1-{tag}")
            serve(sim, own, v1)
            kube.apply(kube.release("web", f"registry.example/web:1-{tag}", replicas=2), ns)
            kube.wait_phase(ns, "web", "Ready", timeout=60)
            kube.apply(v1, ns)  # analysis added; same template, so nothing to analyse yet
            v2 = web(f"registry.example/web:2-{tag}")
            bad = serve(sim, own, v2)
            kube.apply(v2, ns)
            kube.wait_until(lambda: metric(run_of(ns, bad))["successful"] >= 1, 30,
                            what="a first successful measurement")
            own.stop()
            r = kube.wait_phase(ns, "web", "RolledBack", timeout=60)
            run = run_of(ns, bad)
            m = metric(run)
            assert run["status"]["phase"] == "Error"
            assert m["consecutiveError"] == 3 and m["error"] >= 3
            assert f"Prometheus at {own.url}" in m["measurements"][-1]["message"]
            assert "3 consecutive errors (consecutiveErrorLimit 2)" in r["status"]["message"]
            _, metrics = op.get("/metrics")
            assert 'phase="Error",provider="prometheus"' in metrics
    finally:
        own.close()


def test_kill9_mid_analysis_resumes_with_the_same_counts(sim, prom):
    tag = kube.random_suffix()  # a revision of its own: the simulator outlives tests
    with kube.running("an") as (ns, op):
        kube.apply(template(prom, count=8), ns)
        body = web(f"registry.example/web:1-{tag}")
        rev = serve(sim, prom, body)
        kube.apply(body, ns)
        kube.wait_until(lambda: metric(run_of(ns, rev))["count"] >= 3, 30,
                        what="three measurements")
        op.kill9()
        before = metric(run_of(ns, rev))
        op2 = kube.Operator(f"--namespace={ns}").start()
        try:
            kube.wait_phase(ns, "web", "Ready", timeout=60)
            m = metric(run_of(ns, rev))
            # Exactly `count` measurements: none lost from the counts, none counted twice.
            assert (m["count"], m["successful"]) == (8, 8)
            assert m["count"] >= before["count"]
            assert len(m["measurements"]) == 8
        finally:
            op2.stop()


def test_inconclusive_pauses_then_promote_keeps_the_revision(sim, prom):
    tag = kube.random_suffix()  # a revision of its own: the simulator outlives tests
    with kube.running("an") as (ns, op):
        kube.apply(template(prom, successCondition="result[0] < 0.01",
                            failureCondition="result[0] > 0.5"), ns)
        body = web(f"registry.example/web:1-{tag}")
        rev = serve(sim, prom, body, error_ratio=0.1)
        kube.apply(body, ns)
        r = kube.wait_phase(ns, "web", "Paused", timeout=60)
        assert kube.condition(r, "Ready")["reason"] == "AnalysisInconclusive"
        assert f"capstan.dev/promote={rev}" in r["status"]["message"]
        assert run_of(ns, rev)["status"]["phase"] == "Inconclusive"
        kube.kubectl("-n", ns, "annotate", "release", "web", f"capstan.dev/promote={rev}")
        r = kube.wait_phase(ns, "web", "Ready", timeout=30)
        assert r["status"]["stableRevision"] == rev


def test_missing_template_holds_the_new_revision(sim, prom):
    tag = kube.random_suffix()  # a revision of its own: the simulator outlives tests
    with kube.running("an") as (ns, op):
        kube.apply(kube.release("web", f"registry.example/web:1-{tag}", replicas=2), ns)
        kube.wait_phase(ns, "web", "Ready", timeout=60)
        kube.apply(web(f"registry.example/web:2-{tag}", templates=("nope",)), ns)
        r = kube.wait_phase(ns, "web", "Waiting", timeout=30)
        assert kube.condition(r, "Reconciling")["reason"] == "AnalysisInvalid"
        assert "AnalysisTemplate nope not found" in r["status"]["message"]
        assert kube.deployment_image(ns, "web") == f"registry.example/web:1-{tag}"


def bluegreen_web(image, **blue_green):
    from test_bluegreen import bluegreen
    return bluegreen("web", image, **blue_green)


def test_bluegreen_pre_promotion_failure_never_touches_traffic(sim, prom):
    tag = kube.random_suffix()  # a revision of its own: the simulator outlives tests
    from test_bluegreen import TrafficWatch, selector_color
    with kube.running("an") as (ns, op):
        traffic = TrafficWatch(ns, "web")
        try:
            kube.apply(template(prom), ns)
            v1 = bluegreen_web(f"registry.example/web:1-{tag}")
            serve(sim, prom, v1)
            kube.apply(v1, ns)
            kube.wait_phase(ns, "web", "Ready", timeout=90)
            kube.wait_until(lambda: traffic.ready_endpoints() == 2, 30, what="blue serving")
            gate = {"templates": [{"templateName": "error-rate"}]}
            v2 = bluegreen_web(f"registry.example/web:2-{tag}", prePromotionAnalysis=gate)
            bad = serve(sim, prom, v2, error_ratio=0.3)
            kube.apply(v2, ns)
            r = kube.wait_phase(ns, "web", "Degraded", timeout=90)
            assert r["status"]["failedRevision"] == bad
            assert "pre-promotion analysis" in r["status"]["message"]
            assert "error-rate" in r["status"]["message"]
            assert run_of(ns, bad, "prepromotion")["status"]["phase"] == "Failed"
            assert selector_color(ns, "web") == "blue"
            assert traffic.switches() == 0
            assert kube.events(ns, "PreviewFailed")
        finally:
            traffic.stop()


def test_bluegreen_post_promotion_failure_switches_back_once(sim, prom):
    tag = kube.random_suffix()  # a revision of its own: the simulator outlives tests
    from test_bluegreen import TrafficWatch, selector_color
    with kube.running("an") as (ns, op):
        traffic = TrafficWatch(ns, "web")
        try:
            kube.apply(template(prom, failureLimit=1), ns)
            v1 = bluegreen_web(f"registry.example/web:1-{tag}", scaleDownDelaySeconds=60)
            serve(sim, prom, v1)
            kube.apply(v1, ns)
            kube.wait_phase(ns, "web", "Ready", timeout=90)
            kube.wait_until(lambda: traffic.ready_endpoints() == 2, 30, what="blue serving")
            gate = {"templates": [{"templateName": "error-rate"}]}
            v2 = bluegreen_web(f"registry.example/web:2-{tag}", scaleDownDelaySeconds=60,
                               postPromotionAnalysis=gate)
            bad = serve(sim, prom, v2, error_ratio=0.3)
            kube.apply(v2, ns)
            r = kube.wait_phase(ns, "web", "RolledBack", timeout=90)
            assert r["status"]["failedRevision"] == bad
            assert "post-promotion analysis" in r["status"]["message"], r["status"]["message"]
            assert selector_color(ns, "web") == "blue"
            run = run_of(ns, bad, "postpromotion")
            assert run["status"]["phase"] == "Failed" and metric(run)["failed"] == 2
            # Promotion, then exactly one switch back; the active Service always had ready
            # endpoints (TrafficWatch.stop checks).
            kube.wait_until(lambda: traffic.switches() == 2, 10, what="two selector changes")
            assert traffic.colors[-3:] == ["blue", "green", "blue"]
            assert len(kube.events(ns, "SwitchedBack")) == 1
        finally:
            traffic.stop()


P95 = ('histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket'
       '{service="web",revision="{{revision}}"}[10s])))')


def test_latency_regression_against_stable_rolls_back(sim, prom):
    tag = kube.random_suffix()  # a revision of its own: the simulator outlives tests
    with kube.running("an") as (ns, op):
        t = template(prom, name="latency", failureLimit=1, count=5, baseline="stable",
                     baselineMissing="Successful",
                     successCondition="result[0] <= baseline[0] * 1.2")
        t["spec"]["metrics"][0]["name"] = "p95-vs-stable"
        t["spec"]["metrics"][0]["provider"]["prometheus"]["query"] = P95
        kube.apply(t, ns)
        v1 = web(f"registry.example/web:1-{tag}", templates=("latency",))
        stable = serve(sim, prom, v1, latency=0.08)
        kube.apply(v1, ns)
        kube.wait_phase(ns, "web", "Ready", timeout=60)
        first = metric(run_of(ns, stable), "p95-vs-stable")
        assert "no stable revision" in first["measurements"][0]["message"]
        v2 = web(f"registry.example/web:2-{tag}", templates=("latency",))
        slow = serve(sim, prom, v2, latency=0.4)  # buckets 0.1 -> 0.5: far over 20 % slower
        kube.apply(v2, ns)
        r = kube.wait_phase(ns, "web", "RolledBack", timeout=60)
        assert r["status"]["failedRevision"] == slow
        m = metric(run_of(ns, slow), "p95-vs-stable")
        assert m["failed"] == 2
        last = m["measurements"][-1]
        assert last["baseline"].startswith("[0.0") and last["value"].startswith("[0.4"), last
        assert "baseline" in r["status"]["message"]
