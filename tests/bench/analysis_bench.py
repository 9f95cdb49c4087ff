#!/usr/bin/env python3
"""Analysis on the test cluster (a benchmark: prints numbers, asserts nothing about speed).

rollback: per cycle a good revision rolls out under a `web` analysis (a loopback check
  server started here answers {"errorRate": 0}), then a bad one whose check answers 0.3.
  Times, all wall clock on this machine:
    answer   the check server has written the first failing answer
    write    the operator's log line for the rollback's Deployment apply
    seen     the Deployment watch delivers the template back on the good image
  operator share = write - answer (reading the answer, evaluating, the AnalysisRun
  status write, planning, up to the apply); end to end = seen - answer.
scale: N Releases (--replicas 0 by default: no pods) each under a RollingUpdate analysis with a Prometheus metric every
  `--interval` seconds (a stub on loopback answers /api/v1/query and counts the queries:
  a real Prometheus on this machine would measure itself); queries per minute over a
  minute once every run has started, and the operator's RSS.

  source <cluster>/env
  CAPSTAN_BIN=build/capstan python3 tests/bench/analysis_bench.py rollback --cycles 10
  CAPSTAN_BIN=build/capstan python3 tests/bench/analysis_bench.py scale --releases 1000
"""
import argparse
import http.server
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
import kube  # noqa: E402


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


class Stub:
    """/check?rev=R -> {"errorRate": rates[R]}; /api/v1/query -> a one-element vector."""

    def __init__(self):
        self.rates = {}
        self.first_bad = {}  # revision -> time the first failing answer was written
        self.queries = 0
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(url.query)
                if url.path == "/api/v1/query":
                    with outer.lock:
                        outer.queries += 1
                    body = {"status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": {}, "value": [time.time(), "0.01"]}]}}
                    return self.answer(body)
                rev = q.get("rev", [""])[0]
                rate = outer.rates.get(rev, 0.0)
                self.answer({"errorRate": rate})
                if rate > 0:
                    with outer.lock:
                        outer.first_bad.setdefault(rev, time.time())

            def answer(self, body):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


class DeploymentWatch:
    def __init__(self, ns, name):
        self.image, self.image_at, self.lock = None, {}, threading.Lock()
        self.proc = subprocess.Popen(
            ["kubectl", "get", "--raw", f"/apis/apps/v1/namespaces/{ns}/deployments?watch=true&"
             f"fieldSelector=metadata.name={name}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        for line in self.proc.stdout:
            if not line.strip():
                continue
            t = time.time()
            ev = json.loads(line)
            image = ev["object"]["spec"]["template"]["spec"]["containers"][0]["image"]
            with self.lock:
                if image != self.image:
                    self.image = image
                    self.image_at[image] = t

    def stop(self):
        self.proc.terminate()


def revision_of(body):
    out = subprocess.run([os.environ.get("CAPSTAN_BIN", "capstan"), "render", "-f", "-"],
                         input=json.dumps(body), capture_output=True, text=True, check=True)
    import yaml
    for d in yaml.safe_load_all(out.stdout):
        if d and d.get("kind") == "Deployment":
            return d["spec"]["template"]["metadata"]["labels"]["capstan.dev/revision"]
    raise AssertionError("no Deployment in capstan render's output")


def log_times(path, pattern):
    """Wall-clock times of the operator's JSON log lines whose msg matches `pattern`."""
    out = []
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if re.search(pattern, rec.get("msg", "")):
                ts = rec["ts"].rstrip("Z")
                secs, _, frac = ts.partition(".")
                t = time.mktime(time.strptime(secs, "%Y-%m-%dT%H:%M:%S")) - time.timezone
                out.append(t + float("0." + (frac or "0")))
    return out


def template(name, metric):
    return {"apiVersion": "capstan.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": name}, "spec": {"metrics": [metric]}}


def release(name, image, templates, bake, replicas=1):
    return kube.release(name, image, replicas=replicas, strategy={
        "type": "RollingUpdate", "rollingUpdate": {"analysis": {
            "templates": [{"templateName": t} for t in templates], "bakeSeconds": bake}}})


def rollback(args):
    stub = Stub()
    share, e2e = [], []
    with kube.Namespace("anbench") as ns:
        op = kube.Operator(f"--namespace={ns}", "--leader_elect=false").start()
        watch = DeploymentWatch(ns, "web")
        try:
            kube.apply(template("smoke", {
                "name": "smoke", "interval": "1s", "count": 2,
                "successCondition": "result < 0.05",
                "provider": {"web": {"url": stub.url + "/check?rev={{revision}}",
                                     "jsonPath": "{$.errorRate}"}}}), ns)
            for i in range(1, args.cycles + 1):
                good = f"registry.example/web:{i}"
                kube.apply(release("web", good, ["smoke"], 0, args.replicas), ns)
                kube.wait_phase(ns, "web", "Ready", timeout=120)
                body = release("web", f"registry.example/web:bad-{i}", ["smoke"], 60,
                               args.replicas)
                bad = revision_of(body)
                stub.rates[bad] = 0.3
                kube.apply(body, ns)
                kube.wait_until(lambda: watch.image == good and bad in stub.first_bad, 120,
                                interval=0.05, what="rollback")
                answer = stub.first_bad[bad]
                writes = [t for t in log_times(op.log_path, r"apply Deployment web\b")
                          if t >= answer - 0.01]
                with watch.lock:
                    seen = watch.image_at[good]
                e2e.append(seen - answer)
                if writes:
                    share.append(writes[0] - answer)
                print(f"cycle {i}: failing answer -> apply {1000 * (writes[0] - answer) if writes else float('nan'):.1f} ms,"
                      f" -> rollback seen {1000 * (seen - answer):.1f} ms", flush=True)
                kube.wait_phase(ns, "web", "RolledBack", timeout=60)
        finally:
            watch.stop()
            op.stop()
            stub.stop()
    for what, xs in (("operator share (answer -> Deployment apply)", share),
                     ("end to end (answer -> rollback seen by a watch)", e2e)):
        ms = [x * 1000 for x in xs]
        if ms:
            print(f"{what}: n={len(ms)} p50={statistics.median(ms):.1f} ms "
                  f"p99={pct(ms, 0.99):.1f} ms max={max(ms):.1f} ms")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def scale(args):
    stub = Stub()
    with kube.Namespace("anscale") as ns:
        op = kube.Operator(f"--namespace={ns}", "--leader_elect=false").start()
        try:
            base = rss_kib(op.proc.pid)
            kube.apply(template("rate", {
                "name": "rate", "interval": f"{args.interval}s",
                "successCondition": "result[0] < 0.05",
                "provider": {"prometheus": {"address": stub.url,
                                            "query": 'x{revision="{{revision}}"}'}}}), ns)
            t0 = time.time()
            docs = [release(f"r{i}", f"registry.example/r:{i}", ["rate"], 3600, args.replicas)
                    for i in range(args.releases)]
            for k in range(0, len(docs), 100):
                kube.kubectl("apply", "-n", ns, "-f", "-",
                             input=json.dumps({"apiVersion": "v1", "kind": "List",
                                               "items": docs[k:k + 100]}), timeout=600)
            print(f"{args.releases} Releases applied in {time.time() - t0:.0f} s", flush=True)
            kube.wait_until(lambda: len(kube.get("analysisruns", namespace=ns)["items"])
                            >= args.releases, 1800, interval=5, what="a run per Release")
            print(f"every run created {time.time() - t0:.0f} s after the first apply", flush=True)
            with stub.lock:
                q0 = stub.queries
            time.sleep(60)  # a benchmark's measuring window, not a wait for state
            with stub.lock:
                q1 = stub.queries
            rss = rss_kib(op.proc.pid)
            want = args.releases * 60 / args.interval
            print(f"queries per minute with {args.releases} Releases under analysis "
                  f"(interval {args.interval}s, {want:.0f}/min due): {q1 - q0}")
            print(f"operator RSS: {rss / 1024:.1f} MiB (idle before: {base / 1024:.1f} MiB)")
        finally:
            op.stop()
            stub.stop()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("rollback")
    r.add_argument("--cycles", type=int, default=10)
    r.add_argument("--replicas", type=int, default=1)
    s = sub.add_parser("scale")
    s.add_argument("--releases", type=int, default=1000)
    s.add_argument("--interval", type=int, default=30)
    # 0: the Deployments complete at once and no pods load the simulated cluster; the
    # analysis is the same.
    s.add_argument("--replicas", type=int, default=0)
    args = ap.parse_args()
    kube.install_crds("analysistemplates.capstan.dev", "analysisruns.capstan.dev")
    rollback(args) if args.what == "rollback" else scale(args)


if __name__ == "__main__":
    main()
