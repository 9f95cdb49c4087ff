#!/usr/bin/env python3
"""BlueGreen reaction times on the test cluster (a benchmark: prints numbers, asserts
nothing about speed).

For each cycle: a new image is previewed on the idle colour and auto-promoted; then one
pod of the new colour is broken (KWOK: e2e.capstan.dev/break=crash) and Capstan
switches back. Watches (not polling) timestamp what the cluster shows:

  promotion   preview ready (the preview Service's EndpointSlices list every new pod
              as ready) -> the active Service's selector names the new colour
  switch back the broken pod shows CrashLoopBackOff -> the selector names the old
              colour again

Both include two watch deliveries (API server -> this script) besides Capstan's own
work. The operator's view (decision -> Service write done) comes from its
capstan_bluegreen_switch_seconds histogram.

  source <cluster>/env
  CAPSTAN_BIN=build/capstan python3 tests/bench/bluegreen_bench.py --cycles 10
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
import kube  # noqa: E402


class Watch:
    def __init__(self, path, on_event):
        self.proc = subprocess.Popen(["kubectl", "get", "--raw", path], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._run, args=(on_event,), daemon=True).start()

    def _run(self, on_event):
        for line in self.proc.stdout:
            if line.strip():
                on_event(time.monotonic(), json.loads(line))

    def stop(self):
        self.proc.terminate()


class Observer:
    def __init__(self, ns):
        self.lock = threading.Lock()
        self.color = None
        self.color_at = {}  # colour -> time the selector last moved to it
        self.preview = {}   # slice -> set of ready pod names
        self.preview_ready_at = {}  # frozenset(pods) -> first time all were ready
        self.crash_at = {}  # pod -> first time CrashLoopBackOff was seen
        self.watches = [
            Watch(f"/api/v1/namespaces/{ns}/services?watch=true&fieldSelector=metadata.name=web",
                  self.on_service),
            Watch(f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?watch=true&"
                  "labelSelector=kubernetes.io/service-name=web-preview", self.on_slice),
            Watch(f"/api/v1/namespaces/{ns}/pods?watch=true", self.on_pod),
        ]

    def on_service(self, t, ev):
        color = ev["object"]["spec"]["selector"].get("capstan.dev/color")
        with self.lock:
            if color != self.color:
                self.color = color
                self.color_at[color] = t

    def on_slice(self, t, ev):
        obj = ev["object"]
        with self.lock:
            if ev["type"] == "DELETED":
                self.preview.pop(obj["metadata"]["name"], None)
            else:
                self.preview[obj["metadata"]["name"]] = {
                    e["targetRef"]["name"] for e in obj.get("endpoints") or []
                    if e.get("conditions", {}).get("ready", True) is not False and
                    e.get("targetRef")}
            ready = frozenset().union(*self.preview.values()) if self.preview else frozenset()
            self.preview_ready_at.setdefault(ready, t)

    def on_pod(self, t, ev):
        pod = ev["object"]
        for cs in pod.get("status", {}).get("containerStatuses") or []:
            if cs.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
                with self.lock:
                    self.crash_at.setdefault(pod["metadata"]["name"], t)

    def stop(self):
        for w in self.watches:
            w.stop()


def pods_of(ns, color, image):
    items = kube.get("pods", namespace=ns, selector=f"capstan.dev/color={color}")["items"]
    return {p["metadata"]["name"] for p in items
            if p["spec"]["containers"][0]["image"] == image and
            "deletionTimestamp" not in p["metadata"]}


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--replicas", type=int, default=3)
    args = ap.parse_args()
    kube.install_crds()
    promote, back = [], []
    with kube.Namespace("bgbench") as ns:
        op = kube.Operator(f"--namespace={ns}", "--leader_elect=false").start()
        obs = Observer(ns)
        try:
            spec = {"service": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
                    "strategy": {"type": "BlueGreen",
                                 "blueGreen": {"scaleDownDelaySeconds": 600}}}
            kube.apply(kube.release("web", "registry.example/web:0", replicas=args.replicas,
                                    **spec), ns)
            kube.kubectl("-n", ns, "wait", "--for=condition=Ready", "release/web",
                         "--timeout=120s")
            for i in range(1, args.cycles + 1):
                old = obs.color
                new = "green" if old == "blue" else "blue"
                image = f"registry.example/web:{i}"
                kube.kubectl("-n", ns, "patch", "release", "web", "--type=json", "-p", json.dumps(
                    [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                      "value": image}]))
                kube.wait_until(lambda: obs.color == new, 120, interval=0.05, what="promotion")
                pods = frozenset(pods_of(ns, new, image))
                with obs.lock:
                    ready_at = min(t for s, t in obs.preview_ready_at.items() if pods <= s)
                    promote.append(obs.color_at[new] - ready_at)
                victim = sorted(pods)[0]
                kube.kubectl("-n", ns, "annotate", "pod", victim, "e2e.capstan.dev/break=crash")
                kube.wait_until(lambda: obs.color == old, 60, interval=0.05, what="switch back")
                with obs.lock:
                    back.append(obs.color_at[old] - obs.crash_at[victim])
                print(f"cycle {i}: promotion {promote[-1]*1000:.0f} ms after the preview was "
                      f"ready, switch back {back[-1]*1000:.0f} ms after the crash was visible",
                      flush=True)
            _, metrics = op.get("/metrics")
        finally:
            obs.stop()
            op.stop()
    for name, values in (("promotion", promote), ("switch back", back)):
        ms = [v * 1000 for v in values]
        print(f"{name}: n={len(ms)} p50={statistics.median(ms):.0f} ms "
              f"p90={pct(ms, 0.9):.0f} ms max={max(ms):.0f} ms")
    print("operator decision -> Service write done (capstan_bluegreen_switch_seconds):")
    for line in metrics.splitlines():
        if line.startswith("capstan_bluegreen_switch_seconds_sum") or \
                line.startswith("capstan_bluegreen_switch_seconds_count"):
            print("  " + line)


if __name__ == "__main__":
    main()
