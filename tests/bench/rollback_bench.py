#!/usr/bin/env python3
"""RollingUpdate automatic rollback reaction time on the test cluster (a benchmark:
prints numbers, asserts nothing about speed).

For each cycle: a good image rolls out (Release Ready), then a crash-looping one
(KWOK: an image named *crashloop* -> CrashLoopBackOff). Watches (not polling)
timestamp what the cluster shows: the first pod of the bad revision in
CrashLoopBackOff -> the Deployment's template back on the good image (the
rollback write, as the API server's watch delivers it). Both ends include a
watch delivery (API server -> this script) besides Capstan's own work.

  source <cluster>/env
  CAPSTAN_BIN=build/capstan python3 tests/bench/rollback_bench.py --cycles 10
"""
import argparse
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
sys.path.insert(0, os.path.dirname(__file__))
import kube  # noqa: E402
from bluegreen_bench import Watch, pct  # noqa: E402


class Observer:
    def __init__(self, ns, name):
        self.lock = threading.Lock()
        self.image_at = {}  # Deployment template image -> last time it changed to it
        self.image = None
        self.crash_at = {}  # image -> first time a pod with it was in CrashLoopBackOff
        self.watches = [
            Watch(f"/apis/apps/v1/namespaces/{ns}/deployments?watch=true&"
                  f"fieldSelector=metadata.name={name}", self.on_deployment),
            Watch(f"/api/v1/namespaces/{ns}/pods?watch=true", self.on_pod),
        ]

    def on_deployment(self, t, ev):
        image = ev["object"]["spec"]["template"]["spec"]["containers"][0]["image"]
        with self.lock:
            if image != self.image:
                self.image = image
                self.image_at[image] = t

    def on_pod(self, t, ev):
        pod = ev["object"]
        image = pod["spec"]["containers"][0]["image"]
        for cs in pod.get("status", {}).get("containerStatuses") or []:
            if cs.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
                with self.lock:
                    self.crash_at.setdefault(image, t)

    def stop(self):
        for w in self.watches:
            w.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--replicas", type=int, default=2)
    args = ap.parse_args()
    kube.install_crds()
    back = []
    with kube.Namespace("rbbench") as ns:
        op = kube.Operator(f"--namespace={ns}", "--leader_elect=false").start()
        obs = Observer(ns, "web")
        try:
            kube.apply(kube.release("web", "registry.example/web:0", replicas=args.replicas), ns)
            kube.wait_phase(ns, "web", "Ready", timeout=120)
            for i in range(1, args.cycles + 1):
                good = f"registry.example/web:{i}"
                bad = f"registry.example/web:crashloop-{i}"
                kube.set_image(ns, "web", good)
                kube.wait_phase(ns, "web", "Ready", timeout=120)
                kube.set_image(ns, "web", bad)
                kube.wait_until(lambda: obs.image == good and bad in obs.crash_at, 120,
                                interval=0.05, what="rollback")
                with obs.lock:
                    back.append(obs.image_at[good] - obs.crash_at[bad])
                print(f"cycle {i}: rollback write seen {back[-1] * 1000:.0f} ms after the "
                      "crash loop was visible", flush=True)
                kube.wait_phase(ns, "web", "RolledBack", timeout=60)
        finally:
            obs.stop()
            op.stop()
    ms = [v * 1000 for v in back]
    print(f"crash loop visible -> rollback write visible: n={len(ms)} "
          f"p50={statistics.median(ms):.0f} ms p90={pct(ms, 0.9):.0f} ms max={max(ms):.0f} ms")


if __name__ == "__main__":
    main()
