"""Analysis providers end to end: `web` against a loopback HTTP(S) server this test starts
(headers from a Secret, jsonPath, a CA made here with openssl and given through a ConfigMap or
a Secret), the prometheus provider over https with that CA, and `job` (Kubernetes Jobs that
KWOK completes or fails by image name, tests/cluster/kwok-stages.yaml), all through the real
operator on the real control plane."""
import base64
import contextlib
import http.server
import json
import os
import ssl
import subprocess
import tempfile
import threading
import urllib.parse

import pytest
import yaml

import kube

TOKEN = "tok-" + kube.random_suffix() + "-s3cret"


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds("analysistemplates.capstan.dev", "clusteranalysistemplates.capstan.dev",
                      "analysisruns.capstan.dev", "environments.capstan.dev")


class CheckServer:
    """A smoke-check endpoint on loopback: GET /check?rev=R answers
    {"data": {"errorRate": <rate of R>, "ok": <rate < 0.05>}} when the request carries
    `Authorization: Bearer TOKEN`, else 401; /api/v1/query answers like Prometheus (a one-element
    vector with the rate of the revision named in the query). Records every request."""

    def __init__(self, tls=None):
        self.rates = {}
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(url.query)
                outer.requests.append({"path": url.path, "query": q,
                                       "headers": dict(self.headers.items())})
                if url.path == "/api/v1/query":
                    query = q.get("query", [""])[0]
                    rate = next((r for rev, r in outer.rates.items() if rev in query), 0.0)
                    body = {"status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": {}, "value": [0, str(rate)]}]}}
                    return self.answer(200, body)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.answer(401, {"error": "who are you"})
                rate = outer.rates.get(q.get("rev", [""])[0], 0.0)
                self.answer(200, {"data": {"errorRate": rate, "ok": rate < 0.05}})

            def answer(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls["cert"], tls["key"])
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def make_ca(tmp):
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it."""
    def ssl_(*args):
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)
    ssl_("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "2", "-subj", "/CN=capstan-e2e-ca")
    ssl_("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
         "-subj", "/CN=127.0.0.1")
    with open(os.path.join(tmp, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    ssl_("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "srv.crt", "-days", "2", "-extfile", "ext.cnf")
    with open(os.path.join(tmp, "ca.crt")) as f:
        ca = f.read()
    return {"cert": os.path.join(tmp, "srv.crt"), "key": os.path.join(tmp, "srv.key"), "ca": ca}


def release(image, templates, bake=0):
    analysis = {"templates": [{"templateName": t} for t in templates], "bakeSeconds": bake}
    return kube.release("web", image, replicas=2,
                        strategy={"type": "RollingUpdate",
                                  "rollingUpdate": {"analysis": analysis}})


def template(name, *metrics, dry_run=()):
    spec = {"metrics": list(metrics)}
    if dry_run:
        spec["dryRun"] = [{"metricName": m} for m in dry_run]
    return {"apiVersion": "capstan.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": name}, "spec": spec}


def web_metric(url, name="smoke", **web):
    w = {"url": url + "/check?rev={{revision}}", "jsonPath": "{$.data.errorRate}",
         "timeoutSeconds": 5,
         "headers": [{"key": "Authorization",
                      "valueFrom": {"secretKeyRef": {"name": "smoke-token", "key": "header"}}}]}
    w.update(web)
    return {"name": name, "interval": "1s", "count": 3, "successCondition": "result < 0.05",
            "provider": {"web": w}}


def token_secret():
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "smoke-token"},
            "data": {"header": base64.b64encode(f"Bearer {TOKEN}".encode()).decode()}}


def run_of(ns, rev, gate="rolling"):
    return kube.get("analysisrun", f"web-{rev}-{gate}", ns)


def metric(run, name):
    return next(r for r in run["status"]["metricResults"] if r["name"] == name)


def revision(ns):
    return kube.get_release(ns, "web")["status"]["currentRevision"]


def revision_of(body):
    """The revision Capstan will run for this Release (pod label capstan.dev/revision)."""
    out = subprocess.run([os.environ.get("CAPSTAN_BIN", "capstan"), "render", "-f", "-"],
                         input=json.dumps(body), capture_output=True, text=True, check=True)
    for d in yaml.safe_load_all(out.stdout):
        if d and d.get("kind") == "Deployment":
            return d["spec"]["template"]["metadata"]["labels"]["capstan.dev/revision"]
    raise AssertionError("no Deployment in capstan render's output")


def no_token_anywhere(ns):
    """The Secret's value is in no run, Event or Release (only in the header sent)."""
    for kind in ("analysisruns", "events", "releases"):
        assert TOKEN not in kube.kubectl("-n", ns, "get", kind, "-o", "json"), kind


def test_web_provider_passes_then_fails_with_a_header_from_a_secret():
    tag = kube.random_suffix()
    with CheckServer() as srv, kube.running("an") as (ns, op):
        kube.apply(token_secret(), ns)
        kube.apply(template("smoke", web_metric(srv.url)), ns)
        kube.apply(release(f"registry.example/web:1-{tag}", ["smoke"]), ns)
        r = kube.wait_phase(ns, "web", "Ready", timeout=60)
        good = r["status"]["stableRevision"]
        m = metric(run_of(ns, good), "smoke")
        assert (m["count"], m["successful"]) == (3, 3), m
        assert m["measurements"][-1]["value"] == "0"
        seen = [q for q in srv.requests if q["path"] == "/check"]
        assert len(seen) >= 3 and all(q["query"]["rev"] == [good] for q in seen)
        assert all(q["headers"].get("Authorization") == f"Bearer {TOKEN}" for q in seen)

        # The next revision answers 30 % errors: rolled back on the web check.
        v2 = release(f"registry.example/web:2-{tag}", ["smoke"], bake=30)
        bad = revision_of(v2)
        srv.rates[bad] = 0.3
        kube.apply(v2, ns)
        r = kube.wait_phase(ns, "web", "RolledBack", timeout=60)
        assert r["status"]["failedRevision"] == bad
        assert "smoke 0.3" in r["status"]["message"], r["status"]["message"]
        assert run_of(ns, bad)["status"]["phase"] == "Failed"
        _, metrics = op.get("/metrics")
        assert 'capstan_analysis_measurements_total{phase="Failed",provider="web"} 1' in metrics
        no_token_anywhere(ns)


def test_web_provider_without_the_secret_reports_it_and_holds_nothing_running():
    tag = kube.random_suffix()
    with CheckServer() as srv, kube.running("an") as (ns, op):
        m = web_metric(srv.url)
        m["consecutiveErrorLimit"] = 0  # the first error fails the revision
        kube.apply(template("smoke", m), ns)
        kube.apply(kube.release("web", f"registry.example/web:1-{tag}", replicas=2), ns)
        kube.wait_phase(ns, "web", "Ready", timeout=60)
        kube.apply(release(f"registry.example/web:2-{tag}", ["smoke"]), ns)
        r = kube.wait_phase(ns, "web", "RolledBack", timeout=60)
        run = run_of(ns, r["status"]["failedRevision"])
        msg = metric(run, "smoke")["measurements"][-1]["message"]
        assert f"credentials: Secret {ns}/smoke-token" in msg, msg
        assert kube.deployment_image(ns, "web") == f"registry.example/web:1-{tag}"
        assert not [q for q in srv.requests if q["path"] == "/check"], "no request without it"


def test_https_providers_trust_the_ca_from_a_configmap_or_a_secret():
    tag = kube.random_suffix()
    with tempfile.TemporaryDirectory() as tmp:
        tls = make_ca(tmp)
        with CheckServer(tls) as srv, kube.running("an") as (ns, op):
            kube.apply(token_secret(), ns)
            kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "smoke-ca"},
                        "data": {"ca.crt": tls["ca"]}}, ns)
            kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "prom-ca"},
                        "data": {"ca.crt": base64.b64encode(tls["ca"].encode()).decode()}}, ns)
            web_ca = web_metric(srv.url, ca={"configMapKeyRef": {"name": "smoke-ca",
                                                                 "key": "ca.crt"}})
            # The same server without the CA: its measurements are errors (a dry run, so
            # they are shown but decide nothing).
            web_no_ca = web_metric(srv.url, name="smoke-no-ca")
            prom = {"name": "prom-ca", "interval": "1s", "count": 3,
                    "successCondition": "result[0] < 0.05",
                    "provider": {"prometheus": {
                        "address": srv.url, "query": 'errors{revision="{{revision}}"}',
                        "ca": {"secretKeyRef": {"name": "prom-ca", "key": "ca.crt"}}}}}
            kube.apply(template("tls", web_ca, web_no_ca, prom, dry_run=["smoke-no-ca"]), ns)
            kube.apply(release(f"registry.example/web:1-{tag}", ["tls"]), ns)
            r = kube.wait_phase(ns, "web", "Ready", timeout=60)
            run = run_of(ns, r["status"]["stableRevision"])
            assert run["status"]["phase"] == "Successful"
            assert metric(run, "smoke")["successful"] == 3
            assert metric(run, "prom-ca")["successful"] == 3
            no_ca = metric(run, "smoke-no-ca")
            assert no_ca["error"] >= 1 and no_ca["successful"] == 0, no_ca
            # cpprestsdk reports an untrusted certificate as a failed handshake.
            assert "SSL handshake" in no_ca["measurements"][-1]["message"], no_ca


def job_metric(image, **extra):
    m = {"name": "e2e-suite",
         "provider": {"job": {
             "metadata": {"labels": {"team": "shop"}},
             "spec": {"backoffLimit": 0, "template": {"spec": {
                 "restartPolicy": "Never",
                 "containers": [{"name": "suite", "image": image,
                                 "args": ["--target=http://web.{{namespace}}",
                                          "--revision={{revision}}"]}]}}}}}}
    m.update(extra)
    return m


def jobs_of(ns, run):
    return kube.get("jobs", namespace=ns, selector=f"capstan.dev/analysis-run={run}")["items"]


def test_job_provider_complete_passes_and_failed_rolls_back():
    tag = kube.random_suffix()
    with kube.running("an") as (ns, op):
        kube.apply(template("suite-ok", job_metric("registry.example/suite:exit0")), ns)
        kube.apply(template("suite-fail", job_metric("registry.example/suite:exit1")), ns)
        kube.apply(release(f"registry.example/web:1-{tag}", ["suite-ok"]), ns)
        r = kube.wait_phase(ns, "web", "Ready", timeout=90)
        good = r["status"]["stableRevision"]
        run = run_of(ns, good)
        assert run["status"]["phase"] == "Successful"
        m = metric(run, "e2e-suite")
        assert (m["count"], m["successful"]) == (1, 1), m
        jobs = jobs_of(ns, f"web-{good}-rolling")
        assert [j["metadata"]["name"] for j in jobs] == [f"web-{good}-rolling-e2e-suite-1"]
        job = jobs[0]
        owner = job["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "AnalysisRun" and owner["uid"] == run["metadata"]["uid"]
        assert job["metadata"]["labels"]["team"] == "shop"
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args == [f"--target=http://web.{ns}", f"--revision={good}"]
        assert f"kubectl logs -n {ns} job/" in m["measurements"][0]["message"]

        kube.apply(release(f"registry.example/web:2-{tag}", ["suite-fail"]), ns)
        r = kube.wait_phase(ns, "web", "RolledBack", timeout=90)
        bad = r["status"]["failedRevision"]
        run = run_of(ns, bad)
        assert run["status"]["phase"] == "Failed"
        last = metric(run, "e2e-suite")["measurements"][-1]
        assert last["phase"] == "Failed" and "Failed" in last["message"], last
        assert "e2e-suite" in r["status"]["message"], r["status"]["message"]
        assert len(jobs_of(ns, f"web-{bad}-rolling")) == 1
        assert kube.deployment_image(ns, "web") == f"registry.example/web:1-{tag}"
        _, metrics = op.get("/metrics")
        assert 'capstan_analysis_measurements_total{phase="Failed",provider="job"} 1' in metrics


def test_job_provider_kill9_while_the_job_runs_never_starts_it_twice():
    tag = kube.random_suffix()
    with kube.running("an") as (ns, op):
        # An image KWOK keeps running until the test annotates the pod.
        kube.apply(template("suite", job_metric("registry.example/suite:wait")), ns)
        kube.apply(release(f"registry.example/web:1-{tag}", ["suite"]), ns)
        kube.wait_until(lambda: kube.get_release(ns, "web")["status"].get("currentRevision"), 30,
                        what="a current revision")
        rev = revision(ns)
        run = f"web-{rev}-rolling"
        kube.wait_until(lambda: jobs_of(ns, run), 60, what="the analysis Job")
        pods = lambda: kube.get("pods", namespace=ns,  # noqa: E731
                                selector=f"batch.kubernetes.io/job-name={run}-e2e-suite-1")["items"]
        kube.wait_until(lambda: any(p["status"].get("phase") == "Running" for p in pods()), 60,
                        what="the Job's pod running")
        op.kill9()
        op2 = kube.Operator(f"--namespace={ns}", "--resync_seconds=1").start()
        try:
            op2.looked()  # the new operator has reconciled the run as it is
            assert len(jobs_of(ns, run)) == 1
            for p in pods():
                kube.kubectl("-n", ns, "annotate", "pod", p["metadata"]["name"],
                             "e2e.capstan.dev/exit=0", "--overwrite")
            kube.wait_phase(ns, "web", "Ready", timeout=90)
            m = metric(run_of(ns, rev), "e2e-suite")
            assert (m["count"], m["successful"]) == (1, 1), m
            assert [j["metadata"]["name"] for j in jobs_of(ns, run)] == [f"{run}-e2e-suite-1"]
        finally:
            op2.stop()


def test_environment_required_analysis_and_the_upstream_soak_counts_only_passed_analysis():
    """staging requires the platform's web check of every Release; production soaks a
    revision upstream only once that check passed there (a revision promoted past an
    inconclusive check is Ready in staging but does not count). The operator watches all
    namespaces: the Environment controller runs only so."""
    tag = kube.random_suffix()
    platform = f"platform-smoke-{tag}"
    with contextlib.ExitStack() as stack:
        srv = stack.enter_context(CheckServer())
        staging = stack.enter_context(kube.Namespace("anstg"))
        prod = stack.enter_context(kube.Namespace("anprd"))
        kube.apply(token_secret(), staging)
        check = web_metric(srv.url, name="platform-smoke")
        check.update(count=2, successCondition="result < 0.01", failureCondition="result > 0.5")
        ct = {"apiVersion": "capstan.dev/v1alpha1", "kind": "ClusterAnalysisTemplate",
              "metadata": {"name": platform}, "spec": {"metrics": [check]}}
        envs = [
            {"apiVersion": "capstan.dev/v1alpha1", "kind": "Environment",
             "metadata": {"name": f"stg-{tag}"},
             "spec": {"namespaces": [staging], "policies": {"analysis": {
                 "templates": [{"templateName": platform, "clusterScope": True}]}}}},
            {"apiVersion": "capstan.dev/v1alpha1", "kind": "Environment",
             "metadata": {"name": f"prd-{tag}"},
             "spec": {"namespaces": [prod], "policies": {"upstream": {
                 "environment": f"stg-{tag}", "soakSeconds": 1}}}}]
        kube.apply([ct, *envs])
        stack.callback(lambda: [kube.kubectl("delete", o["kind"].lower(), o["metadata"]["name"],
                                             "--ignore-not-found", "--wait=false", check=False)
                                for o in (ct, *envs)])
        op = kube.Operator(log_name="capstan-anenv").start()
        stack.callback(op.stop)

        def upstream_entry():
            st = kube.get("environment", f"stg-{tag}").get("status", {})
            return next((r for r in st.get("releases", []) if r["name"] == "web"), {})

        # 1. Inconclusive in staging (0.03: neither < 0.01 nor > 0.5), promoted by hand:
        # Ready there, but it does not soak, so production waits.
        v1 = kube.release("web", f"registry.example/web:1-{tag}", replicas=1)
        srv.rates[revision_of(v1)] = 0.03
        kube.apply(v1, staging)
        r = kube.wait_phase(staging, "web", "Paused", timeout=60)
        rev1 = r["status"]["currentRevision"]
        run = run_of(staging, rev1)
        assert run["spec"]["templates"] == [platform], run["spec"]
        kube.kubectl("-n", staging, "annotate", "release", "web", f"capstan.dev/promote={rev1}")
        kube.wait_phase(staging, "web", "Ready", timeout=60)
        kube.apply(kube.release("web", f"registry.example/web:1-{tag}", replicas=1), prod)
        r = kube.wait_phase(prod, "web", "Waiting", timeout=60)
        assert kube.condition(r, "Reconciling")["reason"] == "AwaitingUpstream", r["status"]
        kube.wait_until(lambda: upstream_entry().get("revision") == rev1, 30,
                        what="staging lists the revision")
        assert "readySince" not in upstream_entry(), upstream_entry()

        # 2. A revision whose required check passes in staging soaks and reaches production.
        v2 = kube.release("web", f"registry.example/web:2-{tag}", replicas=1)
        kube.apply(v2, staging)
        r = kube.wait_phase(staging, "web", "Ready", timeout=60)
        rev2 = r["status"]["stableRevision"]
        assert run_of(staging, rev2)["status"]["phase"] == "Successful"
        kube.wait_until(lambda: upstream_entry().get("readySince"), 30,
                        what="staging's readySince once the analysis passed")
        kube.apply(kube.release("web", f"registry.example/web:2-{tag}", replicas=1), prod)
        kube.wait_phase(prod, "web", "Ready", timeout=60)
