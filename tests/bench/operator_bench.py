#!/usr/bin/env python3
"""Benchmark `capstan run` against the real test cluster (numbers, not assertions).

  tests/bench/operator_bench.py --kubeconfig DIR/kubeconfig --capstan build/capstan --releases 1,100,1000

Measures: start to /readyz (and where the time goes, from the operator's log),
RSS idle (with a breakdown by mapping from /proc/PID/smaps) and with N Releases
(all Ready), API requests and writes per converged resync, and the time from a
spec change to the first write (from the operator's debug log timestamps vs. the
time the PATCH was sent), p50/p99 over --changes changes.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid


def stop_on_sigterm():
    """SIGTERM (kill, timeout) ends the run through its finally blocks, so the operator
    it started is stopped too and no stray process is left."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def kubectl(kc, *args, input=None):
    # A busy API server (a previous run's namespace still being deleted) can time
    # out a request: try three times, then fail with kubectl's message.
    for attempt in range(3):
        r = subprocess.run(["kubectl", f"--kubeconfig={kc}", *args], input=input, text=True,
                           capture_output=True)
        if r.returncode == 0:
            return r.stdout
        print(f"kubectl {args[0]} failed (attempt {attempt + 1}): {r.stderr.strip()[:300]}",
              file=sys.stderr)
        time.sleep(2)
    raise RuntimeError(f"kubectl {' '.join(args[:2])} failed")


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


def smaps_breakdown(pid, binary):
    """RSS in KiB by kind of mapping."""
    out = {}
    cur = None
    binary = os.path.realpath(binary)
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                perms = parts[1]
                path = parts[5] if len(parts) > 5 else ""
                if path == "[heap]":
                    cur = "heap [heap]"
                elif path.startswith("[stack"):
                    cur = "main thread stack"
                elif path == "":
                    cur = "anonymous (malloc arenas, thread stacks)"
                elif path.startswith("["):
                    cur = path
                elif os.path.realpath(path) == binary:
                    cur = "capstan binary " + ("text" if "x" in perms else "data")
                else:
                    cur = (os.path.basename(path) + " "
                           + ("text" if "x" in perms else "data/relro/rodata"))
            elif parts and parts[0] == "Rss:" and cur is not None:
                out[cur] = out.get(cur, 0) + int(parts[1])
    return out


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def log_ms(line):
    """The wall-clock time of a text log line, in seconds."""
    return time.mktime(time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S")) + \
        float("0." + line[20:23]) - time.timezone


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {"requests": 0.0, "writes": 0.0, "reconciles": 0.0, "informers": 0.0}
    for line in text.splitlines():
        if line.startswith("capstan_rest_requests_total{"):
            v = float(line.rsplit(" ", 1)[1])
            out["requests"] += v
            if re.search(r'verb="(POST|PUT|PATCH|DELETE)"', line):
                out["writes"] += v
        elif line.startswith("capstan_relists_total{"):
            out["informers"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("capstan_reconcile_total{"):
            out["reconciles"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith('capstan_reconcile_duration_seconds_sum{controller="release"'):
            out["reconcile_seconds"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith('capstan_reconcile_duration_seconds_count{controller="release"'):
            out["reconcile_count"] = float(line.rsplit(" ", 1)[1])
    return out


def ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def release(name, image, replicas=1):
    return {"apiVersion": "capstan.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "app", "image": image}]}}}}


def main():
    ap = argparse.ArgumentParser()
    stop_on_sigterm()
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--capstan", required=True)
    ap.add_argument("--releases", default="1,100")
    ap.add_argument("--resync_seconds", type=int, default=5,
                    help="the operator's resync period (5 s: many resyncs to count writes in)")
    ap.add_argument("--trim", action="store_true",
                    help="also report RSS after malloc_trim(0) called through gdb (how much "
                         "of RSS is freed memory malloc kept)")
    ap.add_argument("--changes", type=int, default=100,
                    help="spec changes to time (p99 needs ~100)")
    ap.add_argument("--replicas", type=int, default=1,
                    help="replicas per Release (0: Deployments without pods, for 10,000 "
                         "Releases on a small machine)")
    ap.add_argument("--workers", type=int, default=16, help="the operator's --workers")
    ap.add_argument("--all_namespaces", action="store_true",
                    help="run the operator for all namespaces (no --namespace), so the "
                         "Environment controller runs too, as in the chart's default")
    ap.add_argument("--qps", type=float, default=0,
                    help="the operator's --kube_api_qps (burst: twice this; 0: no "
                         "client-side limit, the operator's default)")
    args = ap.parse_args()
    kc = args.kubeconfig
    # The CRDs (a fresh test cluster has none); apply is a no-op when they are there.
    crds = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crds")
    kubectl(kc, "apply", "--server-side", "-f", crds)
    kubectl(kc, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl(kc, "create", "namespace", ns)
    port = free_port()
    log = open(f"/tmp/{ns}.log", "w")
    t0 = time.monotonic()
    t0_wall = time.time()
    scope = [] if args.all_namespaces else [f"--namespace={ns}"]
    op = subprocess.Popen([args.capstan, "run", f"--kubeconfig={kc}", *scope,
                           f"--health_address=127.0.0.1:{port}", "--leader_elect=false",
                           "--log_level=debug", "--log_format=text",
                           f"--resync_seconds={args.resync_seconds}",
                           f"--workers={args.workers}", f"--kube_api_qps={args.qps}", f"--kube_api_burst={max(1, int(args.qps * 2))}"],
                          stdout=log, stderr=subprocess.STDOUT)
    try:
        while not ready(port):
            time.sleep(0.002)
        print(f"start to /readyz: {(time.monotonic() - t0) * 1000:.0f} ms")
        time.sleep(2)
        log.flush()
        marks = []
        with open(f"/tmp/{ns}.log") as f:
            for line in f:
                for what in ("using ", "serving /healthz", "capstan ", "caches synced"):
                    if what in line and re.match(r"^\d{4}-", line):
                        marks.append(f"{what.strip()} +{(log_ms(line) - t0_wall) * 1000:.0f} ms")
                        break
        print("  start-up (log, from exec): " + "; ".join(marks))
        print(f"RSS idle: {rss_kib(op.pid) / 1024:.1f} MiB, {threads(op.pid)} threads")
        # Lists so far: one initial list per informer (each then holds one watch open),
        # unless a watch failed with 410 Gone since.
        print(f"  informers (initial lists, one watch each): {metrics(port)['informers']:.0f}")
        with open(f"/proc/{op.pid}/smaps_rollup") as f:
            roll = {p[0].rstrip(":"): int(p[1]) for p in (line.split() for line in f)
                    if len(p) == 3 and p[2] == "kB"}
        print(f"  smaps_rollup: Rss {roll['Rss'] / 1024:.1f} MiB = anonymous "
              f"{roll['Anonymous'] / 1024:.1f} + file-backed "
              f"{(roll['Rss'] - roll['Anonymous']) / 1024:.1f} MiB")
        for k, v in sorted(smaps_breakdown(op.pid, args.capstan).items(), key=lambda kv: -kv[1]):
            print(f"  {k}: {v / 1024:.1f} MiB")
        have = 0
        for n in [int(x) for x in args.releases.split(",")]:
            docs = [release(f"r{i}", "registry.example/app:1", args.replicas)
                    for i in range(have, n)]
            # create, not apply: one POST per Release instead of a GET and a POST
            # (10,000 Releases take minutes either way on a small machine).
            for i in range(0, len(docs), 500):
                kubectl(kc, "create", "-n", ns, "-f", "-",
                        input=json.dumps({"apiVersion": "v1", "kind": "List",
                                          "items": docs[i:i + 500]}))
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
            if args.trim:
                subprocess.run(["gdb", "-p", str(op.pid), "-batch", "-ex",
                                "call (int) malloc_trim(0)"], capture_output=True)
                print(f"  RSS after malloc_trim(0): {rss_kib(op.pid) / 1024:.1f} MiB")
            n_rec = m1.get("reconcile_count", 0) - m0.get("reconcile_count", 0)
            if n_rec > 0:
                mean = (m1["reconcile_seconds"] - m0["reconcile_seconds"]) / n_rec * 1000
                print(f"  converged reconcile: {mean:.2f} ms mean over {n_rec:.0f}")
            print(f"  converged, 12 s of resyncs: {rec:.0f} reconciles, "
                  f"{m1['requests'] - m0['requests']:.0f} requests, "
                  f"{m1['writes'] - m0['writes']:.0f} writes")
        # Spec change -> first write latency (operator log timestamps are wall clock).
        lat = []
        lat_committed = []  # from the PATCH's answer: the change is in etcd
        lat_operator = []  # from the operator's first sight of the change (its own share)
        api = Api(kc)
        log_pos = 0
        for i in range(args.changes):
            name = f"r{i % have}"
            before = time.time()
            api.patch(f"/apis/capstan.dev/v1alpha1/namespaces/{ns}/releases/{name}",
                      [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                        "value": f"registry.example/app:v{i + 2}"}])
            committed = time.time()
            deadline = time.time() + 30
            found = None
            seen = None  # the operator's "spec changed" debug line
            while time.time() < deadline and found is None:
                log.flush()
                # Only what was written since the last look: re-reading a large log
                # would take CPU from the operator being measured.
                with open(f"/tmp/{ns}.log") as f:
                    f.seek(log_pos)
                    chunk = f.read()
                end = chunk.rfind("\n") + 1
                log_pos += len(chunk[:end].encode())
                for line in chunk[:end].splitlines():
                    if f"release={ns}/{name} spec changed" in line and seen is None:
                        seen = log_ms(line)
                    if f"release={ns}/{name} apply Deployment" in line or \
                       f"release={ns}/{name} create ControllerRevision" in line:
                        ts = log_ms(line)
                        if ts >= before - 0.001:
                            found = ts
                            break
                time.sleep(0.01)
            if found:
                lat.append(max(0.0, found - before))
                # Log timestamps have ms resolution: a write in the same ms counts as 0.
                lat_committed.append(max(0.0, found - committed))
                if seen is not None:
                    lat_operator.append(max(0.0, found - seen))
        for what, xs in (("PATCH sent", lat), ("PATCH answered", lat_committed),
                         ("operator saw it", lat_operator)):
            xs.sort()
            if xs:
                p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
                print(f"spec change ({what}) -> first write: "
                      f"p50 {xs[len(xs) // 2] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
                      f"max {xs[-1] * 1000:.0f} ms over {len(xs)} changes")
    finally:
        op.terminate()
        op.wait()
        subprocess.run(["kubectl", f"--kubeconfig={kc}", "delete", "namespace", ns,
                        "--wait=false"], capture_output=True)


if __name__ == "__main__":
    main()
