#!/usr/bin/env python3
"""Benchmark `capstan run` against the real test cluster (numbers, not assertions).

  tests/bench/operator_bench.py --kubeconfig DIR/kubeconfig --capstan build/capstan --releases 1,100,1000

Measures: start to /readyz, RSS idle and with N Releases (all Ready), API requests
and writes per converged resync, and the time from a spec change to the first
write (from the operator's debug log timestamps vs. the kubectl patch time).
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid


def kubectl(kc, *args, input=None):
    return subprocess.run(["kubectl", f"--kubeconfig={kc}", *args], input=input, text=True,
                          capture_output=True, check=True).stdout


class Api:
    """A direct HTTPS client for the API server (no kubectl start-up in the timing)."""

    def __init__(self, kubeconfig):
        import http.client
        import ssl
        import urllib.parse
        import yaml
        with open(kubeconfig) as f:
            kc = yaml.safe_load(f)
        cluster = kc["clusters"][0]["cluster"]
        user = kc["users"][0]["user"]
        ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
        ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        u = urllib.parse.urlparse(cluster["server"])
        self.conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx)

    def patch(self, path, body):
        self.conn.request("PATCH", path, body=json.dumps(body),
                          headers={"Content-Type": "application/json-patch+json"})
        r = self.conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"PATCH {path}: {r.status}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {"requests": 0.0, "writes": 0.0, "reconciles": 0.0}
    for line in text.splitlines():
        if line.startswith("capstan_rest_requests_total{"):
            v = float(line.rsplit(" ", 1)[1])
            out["requests"] += v
            if re.search(r'verb="(POST|PUT|PATCH|DELETE)"', line):
                out["writes"] += v
        elif line.startswith("capstan_reconcile_total{"):
            out["reconciles"] += float(line.rsplit(" ", 1)[1])
    return out


def ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def release(name, image):
    return {"apiVersion": "capstan.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": name},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "app", "image": image}]}}}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--capstan", required=True)
    ap.add_argument("--releases", default="1,100")
    args = ap.parse_args()
    kc = args.kubeconfig
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl(kc, "create", "namespace", ns)
    port = free_port()
    log = open(f"/tmp/{ns}.log", "w")
    t0 = time.monotonic()
    op = subprocess.Popen([args.capstan, "run", f"--kubeconfig={kc}", f"--namespace={ns}",
                           f"--health_address=127.0.0.1:{port}", "--leader_elect=false",
                           "--log_level=debug", "--log_format=text", "--resync_seconds=5"],
                          stdout=log, stderr=subprocess.STDOUT)
    try:
        while not ready(port):
            time.sleep(0.002)
        print(f"start to /readyz: {(time.monotonic() - t0) * 1000:.0f} ms")
        time.sleep(2)
        print(f"RSS idle: {rss_kib(op.pid) / 1024:.1f} MiB")
        have = 0
        for n in [int(x) for x in args.releases.split(",")]:
            docs = [release(f"r{i}", "registry.example/app:1") for i in range(have, n)]
            for i in range(0, len(docs), 200):
                kubectl(kc, "apply", "-n", ns, "-f", "-",
                        input="\n---\n".join(json.dumps(d) for d in docs[i:i + 200]))
            have = n
            t = time.monotonic()
            while True:
                out = kubectl(kc, "get", "rel", "-n", ns, "-o",
                              "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}")
                if out.split().count("Ready") == n:
                    break
                if time.monotonic() - t > 900:
                    print("timed out waiting for Ready", file=sys.stderr)
                    break
                time.sleep(1)
            print(f"{n} Releases Ready after {time.monotonic() - t:.1f} s")
            time.sleep(6)
            m0 = metrics(port)
            time.sleep(12)
            m1 = metrics(port)
            rec = m1["reconciles"] - m0["reconciles"]
            print(f"  RSS with {n} Releases: {rss_kib(op.pid) / 1024:.1f} MiB")
            print(f"  converged, 12 s of resyncs: {rec:.0f} reconciles, "
                  f"{m1['requests'] - m0['requests']:.0f} requests, "
                  f"{m1['writes'] - m0['writes']:.0f} writes")
        # Spec change -> first write latency (operator log timestamps are wall clock).
        lat = []
        api = Api(kc)
        for i in range(20):
            name = f"r{i % have}"
            before = time.time()
            api.patch(f"/apis/capstan.dev/v1alpha1/namespaces/{ns}/releases/{name}",
                      [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                        "value": f"registry.example/app:v{i + 2}"}])
            deadline = time.time() + 30
            found = None
            while time.time() < deadline and found is None:
                log.flush()
                with open(f"/tmp/{ns}.log") as f:
                    for line in f:
                        if f"release={ns}/{name} apply Deployment" in line or \
                           f"release={ns}/{name} create ControllerRevision" in line:
                            ts = time.mktime(time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S")) + \
                                float("0." + line[20:23]) - time.timezone
                            if ts >= before - 0.001:
                                found = ts
                                break
                time.sleep(0.01)
            if found:
                lat.append(max(0.0, found - before))
        lat.sort()
        if lat:
            print(f"spec change (PATCH sent) -> first write: "
                  f"p50 {lat[len(lat) // 2] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms "
                  f"over {len(lat)} changes")
    finally:
        op.terminate()
        op.wait()
        subprocess.run(["kubectl", f"--kubeconfig={kc}", "delete", "namespace", ns,
                        "--wait=false"], capture_output=True)


if __name__ == "__main__":
    main()
