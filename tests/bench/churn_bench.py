#!/usr/bin/env python3
"""Churn soak of `capstan run` against the real test cluster (numbers, not assertions).

  tests/bench/churn_bench.py --kubeconfig DIR/kubeconfig --capstan build/capstan \\
      --releases 1000 --minutes 30

Keeps --releases Releases alive in batches of --batch: every round deletes the oldest
batch, creates a new one and changes the image of another, so every Release is created,
updated and deleted while the total stays the same (issue #20's churn soak). Every
--sample seconds it prints the operator's RSS, thread count and number of metric series
(/metrics lines that are samples) and the Releases created, updated and deleted so far;
at the end the curve's first and last thirds are compared, and everything is deleted and
sampled once more. Leaks show as RSS, threads or series that grow with the churn instead
of staying flat.

--replicas 0 (the default) gives Deployments without pods, so 1,000 Releases fit a small
machine; --replicas 1 runs a KWOK pod each.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

from operator_bench import (Api, free_port, kubectl, ready, release, rss_kib,
                            stop_on_sigterm, threads)

BATCH_LABEL = "bench.capstan.dev/batch"


def series(port):
    """Metric series the operator exports now (sample lines of /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def batch_docs(batch, size, replicas):
    docs = []
    for i in range(size):
        r = release(f"c{batch}-{i}", "registry.example/app:1", replicas)
        r["metadata"]["labels"] = {BATCH_LABEL: str(batch)}
        docs.append(r)
    return {"apiVersion": "v1", "kind": "List", "items": docs}


def third_medians(values):
    k = max(1, len(values) // 3)
    return statistics.median(values[:k]), statistics.median(values[-k:])


def main():
    ap = argparse.ArgumentParser()
    stop_on_sigterm()
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--capstan", required=True)
    ap.add_argument("--releases", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--sample", type=float, default=30, help="seconds between samples")
    ap.add_argument("--replicas", type=int, default=0)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args()
    kc = args.kubeconfig
    crds = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crds")
    kubectl(kc, "apply", "--server-side", "-f", crds)
    kubectl(kc, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    ns = f"churn-{uuid.uuid4().hex[:6]}"
    kubectl(kc, "create", "namespace", ns)
    port = free_port()
    log_path = f"/tmp/{ns}.log"
    log = open(log_path, "w")
    op = subprocess.Popen([args.capstan, "run", f"--kubeconfig={kc}", f"--namespace={ns}",
                           f"--health_address=127.0.0.1:{port}", "--leader_elect=false",
                           "--log_format=json", f"--workers={args.workers}"],
                          stdout=log, stderr=subprocess.STDOUT)
    stop = threading.Event()
    curve = []  # (seconds, rss MiB, threads, series, created, updated, deleted)
    counts = {"created": 0, "updated": 0, "deleted": 0}

    def sample(t0):
        curve.append((time.monotonic() - t0, rss_kib(op.pid) / 1024, threads(op.pid),
                      series(port), counts["created"], counts["updated"], counts["deleted"]))
        s = curve[-1]
        print(f"{s[0]:7.0f} s  RSS {s[1]:6.1f} MiB  threads {s[2]:3d}  series {s[3]:5d}  "
              f"created {s[4]:6d}  updated {s[5]:6d}  deleted {s[6]:6d}", flush=True)

    try:
        while not ready(port):
            if op.poll() is not None:
                sys.exit(f"capstan exited ({op.returncode}); see {log_path}")
            time.sleep(0.01)
        batches = list(range(args.releases // args.batch))
        for b in batches:
            kubectl(kc, "create", "-n", ns, "-f", "-",
                    input=json.dumps(batch_docs(b, args.batch, args.replicas)))
            counts["created"] += args.batch
        api = Api(kc)
        t0 = time.monotonic()
        sample(t0)
        next_sample = t0 + args.sample
        end = t0 + args.minutes * 60
        next_batch = len(batches)
        image = 1
        while time.monotonic() < end:
            oldest = batches.pop(0)
            kubectl(kc, "delete", "rel", "-n", ns, "-l", f"{BATCH_LABEL}={oldest}",
                    "--wait=false")
            counts["deleted"] += args.batch
            kubectl(kc, "create", "-n", ns, "-f", "-",
                    input=json.dumps(batch_docs(next_batch, args.batch, args.replicas)))
            counts["created"] += args.batch
            batches.append(next_batch)
            next_batch += 1
            image += 1
            changed = batches[len(batches) // 2]
            for i in range(args.batch):
                api.patch(f"/apis/capstan.dev/v1alpha1/namespaces/{ns}/releases/c{changed}-{i}",
                          [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                            "value": f"registry.example/app:{image}"}])
            counts["updated"] += args.batch
            if time.monotonic() >= next_sample:
                sample(t0)
                next_sample += args.sample
            if op.poll() is not None:
                sys.exit(f"capstan exited ({op.returncode}); see {log_path}")
        sample(t0)
        for name, col in (("RSS MiB", 1), ("threads", 2), ("metric series", 3)):
            first, last = third_medians([s[col] for s in curve])
            print(f"{name}: median {first:.1f} in the first third, {last:.1f} in the last "
                  f"({last - first:+.1f})")
        kubectl(kc, "delete", "rel", "-n", ns, "--all", "--wait=true", "--timeout=600s")
        stop.wait(10)
        sample(t0)
        print(f"after deleting every Release: RSS {curve[-1][1]:.1f} MiB, "
              f"{curve[-1][2]} threads, {curve[-1][3]} series")
    finally:
        op.terminate()
        op.wait()
        log.close()
        kubectl(kc, "delete", "namespace", ns, "--wait=false")
        print(f"operator log: {log_path}")


if __name__ == "__main__":
    main()
