#!/usr/bin/env python3
"""Capstan beside Argo Rollouts, on one test cluster, in one run (a benchmark: prints
numbers, asserts nothing about speed; --smoke asserts only that both converged).

  tests/bench/peer/compare.py                       # N = 1, 100, 1000; 5-minute windows
  tests/bench/peer/compare.py --sizes 1,100 --window 60 --until 02:40
  make bench-peer                                   # the same, with BENCH_PEER_ARGS

For each N, Capstan first, then Argo Rollouts, each alone (the other is not running) on
its own namespace: N BlueGreen Releases / N BlueGreen Rollouts, 1 replica, active and
preview Services, auto-promotion, every other setting at its default (leader election
off: one instance each). Argo Rollouts does not create Services, so the benchmark
creates its 2N Services before the controller starts; Capstan creates its own.

Measured for each side (clocks: /proc for the controller, watches for the cluster):
  RSS           right after the caches synced (the restart with N objects), max and
                mean over the converged window (sampled every second), and 15 s after
                the N objects are gone
  CPU seconds   utime+stime over the converged window and over the creation of the N
                objects (first create sent -> all N converged)
  API requests  counted by the API server itself, per user agent, from its audit log
                (capstan/<version> vs. rollouts-controller/<version>): per minute over
                the converged window, and per created object over the creation
  start -> act  exec of the controller -> its first workload write for an object whose
                template changed while it was down (caches synced -> reconcile -> write)
  change -> write  PATCH of the template answered -> the first workload write for the
                new template seen in a watch (Capstan: the preview Deployment; Argo: the
                new ReplicaSet), p50/p99 over --changes changes
  crash loop    a new revision whose pod crash-loops: CrashLoopBackOff visible -> the
                controller's verdict (Capstan: phase RolledBack; Argo: aborted, which
                needs progressDeadlineAbort: true and waits progressDeadlineSeconds,
                set to --argo-progress-deadline here; without them Argo waits forever
                and stays on the stable ReplicaSet), and whether the active Service
                ever left the stable revision
  promotion     the new revision's pod Ready in a watch -> the active Service's selector
                naming it in a watch

The cluster is tests/cluster/cluster.sh's, with enough fake nodes for 2N pods plus a
rollout's extra ones, and an audit log of the admin user's requests (both controllers
and this script use the admin kubeconfig; their user agents tell them apart).
"""
import argparse
import datetime
import http.client
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from bluegreen_bench import Watch, pct  # noqa: E402
from operator_bench import Api, free_port, kubectl, rss_kib  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------------------------------
# The API server's audit log: one line per request (stage RequestReceived, admin only).

class Audit:
    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.events = []  # (epoch seconds, user agent, verb)
        self.creates = []  # (epoch seconds, request URI) of this script's kubectl creates
        self.lock = threading.Lock()

    def _read(self):
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self.pos += end
        for line in chunk[:end].splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            ua = ev.get("userAgent", "")
            ts = ev.get("requestReceivedTimestamp", "")
            t = datetime.datetime.strptime(ts[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f") \
                .replace(tzinfo=datetime.timezone.utc).timestamp()
            if ua.startswith("kubectl/"):
                # This script's kubectl calls and watches: not counted, but its creates
                # time the creation from when the API server received the first one.
                if ev.get("verb") == "create":
                    self.creates.append((t, ev.get("requestURI", "")))
                continue
            self.events.append((t, ua, ev.get("verb", "")))

    def count(self, ua_prefix, t0, t1):
        """Requests (and writes) from agents starting with ua_prefix in [t0, t1) (epoch)."""
        with self.lock:
            self._read()
            reqs = [v for t, ua, v in self.events if ua.startswith(ua_prefix) and t0 <= t < t1]
        writes = sum(1 for v in reqs if v in ("create", "update", "patch", "delete",
                                              "deletecollection"))
        return len(reqs), writes

    def first_create(self, path, t0):
        """When the API server received this script's first create under `path` after t0
        (epoch), or None."""
        with self.lock:
            self._read()
            return min((t for t, uri in self.creates if t >= t0 and uri.startswith(path)),
                       default=None)

    def agents(self):
        """Every user agent seen but kubectl's, with its request count."""
        with self.lock:
            self._read()
            seen = {}
            for _, ua, _ in self.events:
                seen[ua] = seen.get(ua, 0) + 1
            return [f"{ua or '(none: the PATCHes of this script)'} ({c})"
                    for ua, c in sorted(seen.items())]


# ---------------------------------------------------------------------------------------
# What the cluster shows, from watches (monotonic times at delivery to this script).

def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Observer:
    def __init__(self, side, ns):
        self.side = side
        self.lock = threading.Lock()
        self.pods = {}          # pod name -> (app, image, labels)
        self.ready_at = {}      # (app, image) -> first time a pod of it was Ready
        self.crash_at = {}      # (app, image) -> first CrashLoopBackOff
        self.selector = {}      # active Service name -> selector
        self.switches = {}      # active Service name -> [(t, selector)]
        self.write_at = {}      # (app, image) -> first workload write carrying the image
        self.objects = {}       # name -> object (Release or Rollout)
        self.verdict_at = {}    # name -> first time the controller gave up on a revision
        self.gone = set()
        api = side.api_path(ns)
        self.watches = [
            Watch(f"/api/v1/namespaces/{ns}/pods?watch=true&timeoutSeconds=7200", self.on_pod),
            Watch(f"/api/v1/namespaces/{ns}/services?watch=true&timeoutSeconds=7200",
                  self.on_service),
            Watch(f"{api}?watch=true&timeoutSeconds=7200", self.on_object),
        ] + [Watch(f"{path}?watch=true&timeoutSeconds=7200", self.on_workload)
             for path in side.workload_paths(ns)]

    def on_pod(self, t, ev):
        pod = ev.get("object", {})
        meta = pod.get("metadata", {})
        labels = meta.get("labels") or {}
        app = labels.get("app")
        if not app or ev.get("type") == "DELETED":
            return
        image = pod["spec"]["containers"][0]["image"]
        with self.lock:
            self.pods[meta["name"]] = (app, image, labels)
            for c in pod.get("status", {}).get("conditions") or []:
                if c.get("type") == "Ready" and c.get("status") == "True":
                    self.ready_at.setdefault((app, image), t)
            for cs in pod.get("status", {}).get("containerStatuses") or []:
                if cs.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
                    self.crash_at.setdefault((app, image), t)

    def on_service(self, t, ev):
        svc = ev.get("object", {})
        name = svc.get("metadata", {}).get("name", "")
        if name.endswith("-preview") or ev.get("type") == "DELETED":
            return
        sel = (svc.get("spec") or {}).get("selector") or {}
        with self.lock:
            if self.selector.get(name) != sel:
                self.selector[name] = sel
                self.switches.setdefault(name, []).append((t, dict(sel)))

    def on_workload(self, t, ev):
        obj = ev.get("object", {})
        tmpl = (obj.get("spec") or {}).get("template") or {}
        app = ((tmpl.get("metadata") or {}).get("labels") or {}).get("app")
        if not app or ev.get("type") == "DELETED":
            return
        image = tmpl["spec"]["containers"][0]["image"]
        with self.lock:
            self.write_at.setdefault((app, image), t)

    def on_object(self, t, ev):
        obj = ev.get("object", {})
        name = obj.get("metadata", {}).get("name")
        if not name:
            return
        with self.lock:
            if ev.get("type") == "DELETED":
                self.objects.pop(name, None)
                self.gone.add(name)
                return
            self.objects[name] = obj
            if self.side.gave_up(obj):
                self.verdict_at.setdefault(name, t)

    def converged(self):
        with self.lock:
            return sum(1 for o in self.objects.values() if self.side.converged(o))

    def image_of(self, name):
        with self.lock:
            o = self.objects.get(name)
            return o["spec"]["template"]["spec"]["containers"][0]["image"] if o else None

    def serving(self, app, image):
        """The active Service selects the pods of (app, image)."""
        with self.lock:
            sel = self.selector.get(app)
            return any(a == app and i == image and matches(sel, labels)
                       for a, i, labels in self.pods.values())

    def switch_to(self, app, image, after):
        """The first selector change of app's active Service after `after` naming a pod
        of (app, image)."""
        with self.lock:
            pods = [labels for a, i, labels in self.pods.values() if a == app and i == image]
            for t, sel in self.switches.get(app, []):
                if t >= after and any(matches(sel, labels) for labels in pods):
                    return t
        return None

    def stop(self):
        for w in self.watches:
            w.stop()


# ---------------------------------------------------------------------------------------
# The two sides.

def template(name, image):
    return {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": image,
                                     "ports": [{"name": "http", "containerPort": 8080}]}]}}


PORTS = [{"name": "http", "port": 80, "targetPort": "http"}]


class Capstan:
    name = "Capstan"
    agent = "capstan/"
    plural = "releases"

    def __init__(self, binary):
        self.binary = os.path.abspath(binary)

    def version(self):
        r = subprocess.run([self.binary, "version"], capture_output=True, text=True)
        return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout else "?"

    def api_path(self, ns):
        return f"/apis/capstan.dev/v1alpha1/namespaces/{ns}/releases"

    def workload_paths(self, ns):
        return [f"/apis/apps/v1/namespaces/{ns}/deployments"]

    def objects(self, names, image):
        return [{"apiVersion": "capstan.dev/v1alpha1", "kind": "Release",
                 "metadata": {"name": n},
                 "spec": {"replicas": 1, "template": template(n, image),
                          "service": {"ports": PORTS},
                          "strategy": {"type": "BlueGreen", "blueGreen": {}}}} for n in names]

    def user_objects(self, names):
        return []  # Capstan creates the active and preview Services itself

    def crash_patch(self, image):
        return [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                 "value": image}]

    def converged(self, o):
        st = o.get("status") or {}
        return st.get("phase") == "Ready" and \
            st.get("observedGeneration") == o["metadata"].get("generation")

    def gave_up(self, o):
        return (o.get("status") or {}).get("phase") in ("RolledBack", "Degraded")

    def start(self, kc, ns, logf):
        self.port = free_port()
        return subprocess.Popen([self.binary, "run", f"--kubeconfig={kc}", f"--namespace={ns}",
                                 f"--health_address=127.0.0.1:{self.port}",
                                 "--leader_elect=false"],
                                stdout=logf, stderr=subprocess.STDOUT)

    def synced(self, proc, log_path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False


class Argo:
    name = "Argo Rollouts"
    agent = "rollouts-controller/"
    plural = "rollouts"

    def __init__(self, binary, progress_deadline):
        self.binary = binary
        self.progress_deadline = progress_deadline

    def version(self):
        r = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        return (r.stdout or r.stderr).strip().splitlines()[0] if r.stdout or r.stderr else "?"

    def api_path(self, ns):
        return f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/rollouts"

    def workload_paths(self, ns):
        return [f"/apis/apps/v1/namespaces/{ns}/replicasets"]

    def objects(self, names, image):
        return [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                 "metadata": {"name": n},
                 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": n}},
                          "template": template(n, image),
                          "strategy": {"blueGreen": {"activeService": n,
                                                     "previewService": f"{n}-preview",
                                                     "autoPromotionEnabled": True}}}}
                for n in names]

    def user_objects(self, names):
        return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": s},
                 "spec": {"selector": {"app": n}, "ports": PORTS}}
                for n in names for s in (n, f"{n}-preview")]

    def crash_patch(self, image):
        # Argo's documented way to give up on a failing revision without analysis.
        return [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                 "value": image},
                {"op": "add", "path": "/spec/progressDeadlineSeconds",
                 "value": self.progress_deadline},
                {"op": "add", "path": "/spec/progressDeadlineAbort", "value": True}]

    def converged(self, o):
        st = o.get("status") or {}
        return st.get("phase") == "Healthy" and \
            str(st.get("observedGeneration")) == str(o["metadata"].get("generation"))

    def gave_up(self, o):
        st = o.get("status") or {}
        return bool(st.get("abort")) or st.get("phase") == "Degraded"

    def start(self, kc, ns, logf):
        return subprocess.Popen([self.binary, f"--kubeconfig={kc}", "--namespaced",
                                 f"--namespace={ns}", "--leader-elect=false",
                                 f"--metricsPort={free_port()}", f"--healthzPort={free_port()}"],
                                stdout=logf, stderr=subprocess.STDOUT)

    def synced(self, proc, log_path):
        # Logged once every informer cache has synced, just before its workers start.
        with open(log_path, errors="replace") as f:
            return "Started controller" in f.read()


# ---------------------------------------------------------------------------------------

class Patcher:
    """operator_bench's Api (one HTTPS connection, no kubectl start-up in the timing),
    reconnected when the API server has closed the idle connection."""

    def __init__(self, kc):
        self.kc = kc
        self.api = Api(kc)

    def patch(self, path, body):
        try:
            self.api.patch(path, body)
        except (OSError, http.client.HTTPException):
            self.api = Api(self.kc)
            self.api.patch(path, body)


def create(kc, ns, docs):
    for i in range(0, len(docs), 500):
        kubectl(kc, "create", "-n", ns, "-f", "-",
                input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs[i:i + 500]}))


def wait(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    log(f"timed out after {timeout:.0f} s waiting for {what}")
    return None


class Controller:
    """One run of a side's controller process, its log in the cluster directory."""

    def __init__(self, side, kc, ns, logdir):
        self.side, self.kc, self.ns = side, kc, ns
        self.log_path = os.path.join(logdir, f"{side.plural}-{ns}-{int(time.time())}.log")

    def start(self):
        self.logf = open(self.log_path, "w")
        self.t_exec = time.monotonic()
        self.proc = self.side.start(self.kc, self.ns, self.logf)
        ok = wait(lambda: self.proc.poll() is not None or
                  self.side.synced(self.proc, self.log_path), 120, "caches synced", 0.005)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.side.name} exited; see {self.log_path}")
        self.t_synced = time.monotonic() if ok else None
        self.rss_synced = rss_kib(self.proc.pid)
        return self

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def rss(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def run_side(side, n, args, kc, api, audit, logdir):
    """Everything measured for one side at one size; returns a dict of figures."""
    r = {}
    ns = f"peer-{side.plural[:-1]}-{n}-{os.urandom(3).hex()}"
    kubectl(kc, "create", "namespace", ns)
    wait(lambda: subprocess.run(["kubectl", f"--kubeconfig={kc}", "-n", ns, "get", "sa",
                                 "default"], capture_output=True).returncode == 0, 60,
         "default serviceaccount")
    names = [f"r{i}" for i in range(n)]
    image = "registry.example/app:1"
    if side.user_objects(names):
        create(kc, ns, side.user_objects(names))
    obs = Observer(side, ns)
    ctl = Controller(side, kc, ns, logdir).start()
    try:
        log(f"{side.name} N={n}: synced in {(ctl.t_synced - ctl.t_exec) * 1000:.0f} ms "
            f"(empty namespace), RSS {ctl.rss_synced / 1024:.1f} MiB")
        r["rss_synced_empty"] = ctl.rss_synced / 1024
        # Creation: first create sent -> all N converged.
        cpu0, w0, m0 = ctl.cpu(), time.time(), time.monotonic()
        create(kc, ns, side.objects(names, image))
        ok = wait(lambda: obs.converged() >= n, args.converge_timeout, f"{n} converged", 0.2)
        r["converged"] = bool(ok)
        # From the API server's receipt of the first create (audit log), so kubectl's own
        # start (a second or more on a loaded machine) is not counted against a side.
        t_conv = time.time()
        first = audit.first_create(side.api_path(ns), w0)
        r["create_s"] = t_conv - first if first is not None else time.monotonic() - m0
        r["cpu_create"] = ctl.cpu() - cpu0
        reqs, writes = audit.count(side.agent, w0, time.time())
        r["req_per_obj"] = reqs / n
        r["writes_per_obj"] = writes / n
        log(f"{side.name} N={n}: {obs.converged()}/{n} converged in {r['create_s']:.1f} s, "
            f"{r['cpu_create']:.2f} CPU s, {reqs} requests ({writes} writes)")
        if not ok:
            return r
        if args.smoke:
            return r
        # Converged window: opened once the controller has written nothing for `settle`
        # seconds (a side that reports converged before its last status patches and Events
        # would otherwise count the tail of the creation as its rate at rest).
        time.sleep(args.settle)
        wait(lambda: audit.count(side.agent, time.time() - args.settle, time.time())[1] == 0,
             120, "no writes for the settle time", 1)
        cpu0, w0 = ctl.cpu(), time.time()
        samples = []
        end = time.monotonic() + args.window
        while time.monotonic() < end:
            samples.append(ctl.rss() / 1024)
            time.sleep(1)
        w1 = time.time()
        r["cpu_window"] = ctl.cpu() - cpu0
        r["rss_max"], r["rss_mean"] = max(samples), statistics.mean(samples)
        reqs, writes = audit.count(side.agent, w0, w1)
        r["req_per_min"] = reqs / ((w1 - w0) / 60)
        r["writes_per_min"] = writes / ((w1 - w0) / 60)
        log(f"{side.name} N={n}: converged {args.window:.0f} s: RSS max {r['rss_max']:.1f} "
            f"mean {r['rss_mean']:.1f} MiB, {r['cpu_window']:.2f} CPU s, {reqs} requests")
        # Start -> first act: a template changed while the controller was down.
        ctl.stop()
        image_down = "registry.example/app:while-down"
        api.patch(f"{side.api_path(ns)}/r0", [{"op": "replace", "path":
                  "/spec/template/spec/containers/0/image", "value": image_down}])
        time.sleep(1)
        ctl = Controller(side, kc, ns, logdir).start()
        r["start_synced_ms"] = (ctl.t_synced - ctl.t_exec) * 1000
        r["rss_synced"] = ctl.rss_synced / 1024
        t = wait(lambda: obs.write_at.get(("r0", image_down)), 120, "first write after start")
        r["start_act_ms"] = (t - ctl.t_exec) * 1000 if t else None
        log(f"{side.name} N={n}: start -> synced {r['start_synced_ms']:.0f} ms (RSS "
            f"{r['rss_synced']:.1f} MiB), -> first write {r['start_act_ms'] or 0:.0f} ms")
        wait(lambda: obs.converged() >= n, args.converge_timeout, "r0 converged again", 0.2)
        # Template changes, one after another: each waits for its first write (and, when
        # it reuses an object, for that object's promotion first).
        lat, changes = [], []
        for i in range(args.changes):
            name = f"r{i % n}"
            img = f"registry.example/app:change-{i}"
            if i >= n:
                prev_name, prev_img, _ = changes[i - n]
                wait(lambda: obs.serving(prev_name, prev_img) and
                     obs.converged() >= n, 120, f"promotion of {prev_name}")
            api.patch(f"{side.api_path(ns)}/{name}", [{"op": "replace", "path":
                      "/spec/template/spec/containers/0/image", "value": img}])
            t0 = time.monotonic()
            changes.append((name, img, t0))
            t = wait(lambda: obs.write_at.get((name, img)), 60, f"first write of change {i}",
                     0.002)
            if t:
                lat.append(max(0.0, t - t0) * 1000)
        if lat:
            r["change_p50"], r["change_p99"] = statistics.median(lat), pct(lat, 0.99)
            r["changes"] = len(lat)
        wait(lambda: obs.converged() >= n and all(obs.serving(a, i) for a, i, _ in changes[-n:]),
             args.converge_timeout, "every change promoted", 0.2)
        promo = []
        for name, img, t0 in changes:
            ready = obs.ready_at.get((name, img))
            sw = obs.switch_to(name, img, t0)
            if ready is not None and sw is not None:
                promo.append(max(0.0, sw - ready) * 1000)
        if promo:
            r["promo_p50"], r["promo_p99"], r["promos"] = \
                statistics.median(promo), pct(promo, 0.99), len(promo)
        log(f"{side.name} N={n}: change -> write p50 {r.get('change_p50', 0):.0f} p99 "
            f"{r.get('change_p99', 0):.0f} ms ({len(lat)}), ready -> promotion p50 "
            f"{r.get('promo_p50', 0):.0f} p99 {r.get('promo_p99', 0):.0f} ms ({len(promo)})")
        # A crash-looping new revision on r0.
        stable_sel = dict(obs.selector.get("r0") or {})
        bad = f"registry.example/app:crashloop-{side.plural}"
        t_patch = time.monotonic()
        api.patch(f"{side.api_path(ns)}/r0", side.crash_patch(bad))
        t = wait(lambda: obs.verdict_at.get("r0"), args.crash_timeout, "crash-loop verdict", 0.02)
        crash = obs.crash_at.get(("r0", bad))
        time.sleep(2)
        with obs.lock:
            moved = [s for tt, s in obs.switches.get("r0", []) if tt >= t_patch]
        r["crash_stayed"] = not moved and obs.selector.get("r0") == stable_sel
        r["crash_verdict_ms"] = (t - crash) * 1000 if t and crash else None
        r["crash_verdict_patch_ms"] = (t - t_patch) * 1000 if t else None
        log(f"{side.name} N={n}: crash loop visible -> verdict "
            f"{r['crash_verdict_ms'] or -1:.0f} ms, stayed on stable: {r['crash_stayed']}")
        # Deletion.
        kubectl(kc, "delete", "-n", ns, side.plural, "--all", "--wait=false")
        wait(lambda: not obs.objects, args.converge_timeout, "objects deleted", 0.2)
        time.sleep(15)
        r["rss_deleted"] = ctl.rss() / 1024
        log(f"{side.name} N={n}: RSS 15 s after deletion {r['rss_deleted']:.1f} MiB")
        return r
    finally:
        ctl.stop()
        obs.stop()
        kubectl(kc, "delete", "namespace", ns, "--wait=false")
        # The next side should not pay for this one's pods being deleted.
        wait(lambda: subprocess.run(["kubectl", f"--kubeconfig={kc}", "get", "namespace", ns],
                                    capture_output=True).returncode != 0, 300,
             f"namespace {ns} gone", 1)


ROWS = [
    ("converged", "all N converged", "{}"),
    ("rss_synced", "RSS right after caches synced, N objects (MiB)", "{:.1f}"),
    ("rss_max", "RSS converged, max (MiB)", "{:.1f}"),
    ("rss_mean", "RSS converged, mean (MiB)", "{:.1f}"),
    ("rss_deleted", "RSS 15 s after all N deleted (MiB)", "{:.1f}"),
    ("cpu_window", "CPU converged, over the window (s)", "{:.2f}"),
    ("cpu_create", "CPU over the creation of N (s)", "{:.2f}"),
    ("create_s", "creation: first create received -> all converged (s)", "{:.1f}"),
    ("req_per_min", "API requests/min converged", "{:.1f}"),
    ("writes_per_min", "  of which writes", "{:.1f}"),
    ("req_per_obj", "API requests per created object", "{:.1f}"),
    ("writes_per_obj", "  of which writes", "{:.1f}"),
    ("start_synced_ms", "start -> caches synced, N objects (ms)", "{:.0f}"),
    ("start_act_ms", "start -> first write for a changed object (ms)", "{:.0f}"),
    ("change_p50", "template change -> first workload write p50 (ms)", "{:.0f}"),
    ("change_p99", "template change -> first workload write p99 (ms)", "{:.0f}"),
    ("crash_verdict_ms", "crash loop visible -> verdict (ms)", "{:.0f}"),
    ("crash_stayed", "crash loop: active Service stayed on stable", "{}"),
    ("promo_p50", "preview pod Ready -> promotion seen p50 (ms)", "{:.0f}"),
    ("promo_p99", "preview pod Ready -> promotion seen p99 (ms)", "{:.0f}"),
]


def table(n, cap, argo):
    out = [f"| N = {n} | Capstan | Argo Rollouts | Argo / Capstan |", "| --- | --- | --- | --- |"]
    for key, label, fmt in ROWS:
        a, b = cap.get(key), argo.get(key)
        if a is None and b is None:
            continue
        fa = fmt.format(a) if a is not None else "-"
        fb = fmt.format(b) if b is not None else "-"
        ratio = "-"
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
                not isinstance(a, bool) and a > 0:
            ratio = f"{b / a:.1f}x"
        out.append(f"| {label} | {fa} | {fb} | {ratio} |")
    extra = []
    for name, r in (("Capstan", cap), ("Argo", argo)):
        if r.get("changes"):
            extra.append(f"{name}: {r['changes']} changes, {r.get('promos', 0)} promotions timed")
    return "\n".join(out) + ("\n\n" + "; ".join(extra) if extra else "")


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, Linux {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,100,1000")
    ap.add_argument("--window", type=float, default=300,
                    help="seconds of the converged window (default 5 minutes)")
    ap.add_argument("--settle", type=float, default=10,
                    help="seconds after convergence before the window opens")
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--argo-progress-deadline", type=int, default=30,
                    help="progressDeadlineSeconds set on the crash-looping Rollout (Argo's "
                         "default is 600)")
    ap.add_argument("--crash-timeout", type=float, default=180)
    ap.add_argument("--converge-timeout", type=float, default=900)
    ap.add_argument("--until", default="",
                    help="HH:MM (UTC): skip a size that would not finish by then")
    ap.add_argument("--capstan", default=os.path.join(ROOT, "build", "capstan"))
    ap.add_argument("--cluster-dir", default=os.path.join(ROOT, "build", "bench-peer-cluster"))
    ap.add_argument("--keep-cluster", action="store_true", help="leave the cluster running")
    ap.add_argument("--reuse-cluster", action="store_true",
                    help="use the cluster already running in --cluster-dir (started by an "
                         "earlier --keep-cluster run) and merge with its earlier results")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"),
                    help="the Markdown report ('' to write none)")
    ap.add_argument("--smoke", action="store_true",
                    help="N=1, assert only that both sides converged (no windows, no report)")
    ap.add_argument("--report-only", action="store_true",
                    help="write the report from the results saved in --cluster-dir")
    ap.add_argument("--only", choices=["capstan", "argo"],
                    help="run one side only (to try the harness; no comparison)")
    args = ap.parse_args()
    sizes = [1] if args.smoke else [int(x) for x in args.sizes.split(",")]
    if args.smoke:
        args.out = ""

    argo_bin = "rollouts-controller"
    if args.report_only:
        with open(os.path.join(args.cluster_dir, "results.json")) as f:
            state = json.load(f)
        cap = Capstan(args.capstan)
        bin_dir = subprocess.run([os.path.join(HERE, "peer.sh"), "bin"], capture_output=True,
                                 text=True).stdout.strip()
        argo = Argo(os.path.join(bin_dir, "rollouts-controller"), args.argo_progress_deadline)
        finish(args, state, [], cap, argo, state.get("nodes", 3))
        return
    if args.only != "capstan":
        out = subprocess.run([os.path.join(HERE, "peer.sh"), "build"], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        argo_bin = os.path.join(out.strip().splitlines()[-1], "rollouts-controller")
    argo_crds = subprocess.run([os.path.join(HERE, "peer.sh"), "crds"], check=True,
                               capture_output=True, text=True).stdout.strip()
    cap, argo = Capstan(args.capstan), Argo(argo_bin, args.argo_progress_deadline)

    # Enough fake nodes (500 pods each) for the largest size twice over, plus room.
    nodes = max(3, math.ceil((2 * max(sizes) + 500) / 500))
    env = dict(os.environ, CAPSTAN_CLUSTER_NODES=str(nodes),
               CAPSTAN_CLUSTER_AUDIT_POLICY=os.path.join(HERE, "audit-policy.yaml"))
    cluster = os.path.join(ROOT, "tests", "cluster", "cluster.sh")
    os.makedirs(args.cluster_dir, exist_ok=True)
    bin_dir = subprocess.run([cluster, "bin"], capture_output=True, text=True).stdout.strip()
    os.environ["PATH"] = bin_dir + ":" + os.environ["PATH"]
    kc = os.path.join(args.cluster_dir, "kubeconfig")
    os.environ["KUBECONFIG"] = kc
    saved = os.path.join(args.cluster_dir, "results.json")
    reused = args.reuse_cluster and os.path.exists(kc) and subprocess.run(
        ["kubectl", f"--kubeconfig={kc}", "get", "--raw", "/readyz"],
        capture_output=True).returncode == 0
    if reused:
        log(f"reusing the test cluster in {args.cluster_dir}")
    else:
        log(f"starting the test cluster ({nodes} fake nodes) in {args.cluster_dir}")
        subprocess.run([cluster, "up", args.cluster_dir], env=env, check=True)
        if os.path.exists(saved):
            os.remove(saved)
    # Results of earlier runs on this same cluster (--only, --reuse-cluster) are merged.
    state = {"capstan": {}, "argo": {}, "loads": [], "started": time.time(), "runs": 0}
    if os.path.exists(saved):
        with open(saved) as f:
            state = json.load(f)
    state["runs"] += 1
    if reused:
        nodes = state.get("nodes", nodes)  # the cluster as it was started
    state["nodes"] = nodes
    state["settings"] = {k: getattr(args, k) for k in
                         ("window", "settle", "changes", "argo_progress_deadline")}
    # The checkout when the run started (a long run may outlive a commit).
    state["commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip()
    results, skipped, loads = {}, [], state["loads"]
    loads.append(loadavg())
    started = state["started"]
    try:
        kubectl(kc, "apply", "--server-side", "-f", os.path.join(ROOT, "crds"))
        kubectl(kc, "apply", "--server-side", "-k", argo_crds)
        kubectl(kc, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        api = Patcher(kc)
        audit = Audit(os.path.join(args.cluster_dir, "logs", "audit.log"))
        logdir = os.path.join(args.cluster_dir, "logs")
        for n in sizes:
            if args.until:
                hh, mm = (int(x) for x in args.until.split(":"))
                now = datetime.datetime.now(datetime.timezone.utc)
                end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
                # Rough cost of one size, both sides: the window, the changes (sequential
                # promotions below 100 objects), creation and deletion.
                est = 2 * (args.window + args.settle + 90 + args.changes * (2.5 if n < args.changes
                                                                            else 0.4) + n * 0.25)
                if now.timestamp() + est > end.timestamp():
                    skipped.append(n)
                    log(f"N={n} skipped for time: needs ~{est / 60:.0f} min, {args.until} UTC "
                        f"is {(end - now).total_seconds() / 60:.0f} min away")
                    continue
            loads.append(loadavg())
            for key, side in (("capstan", cap), ("argo", argo)):
                if args.only in (None, key):
                    state[key][str(n)] = run_side(side, n, args, kc, api, audit, logdir)
                    with open(saved, "w") as f:
                        json.dump(state, f)
            loads.append(loadavg())
            results[n] = (state["capstan"].get(str(n), {}), state["argo"].get(str(n), {}))
            print(table(n, *results[n]) + "\n", flush=True)
        agents = audit.agents()
        state["agents"] = agents
        with open(saved, "w") as f:
            json.dump(state, f)
    finally:
        if not args.keep_cluster and not reused:
            subprocess.run([cluster, "down", args.cluster_dir])
    # Every size both sides have measured on this cluster, in this run or an earlier one.
    finish(args, state, skipped, cap, argo, nodes)


def finish(args, state, skipped, cap, argo, nodes):
    # Every size measured on this cluster, in this run or an earlier one (--only,
    # --reuse-cluster); a side not measured shows "-".
    sizes = sorted({int(n) for side in ("capstan", "argo") for n in state[side]})
    results = {n: (state["capstan"].get(str(n), {}), state["argo"].get(str(n), {}))
               for n in sizes}
    loads, agents, started = state["loads"], state.get("agents", []), state["started"]
    if args.smoke:
        for n, (a, b) in results.items():
            assert a.get("converged"), "Capstan did not converge"
            assert b.get("converged"), "Argo Rollouts did not converge"
        print("both converged")
        return
    if skipped:
        print(f"skipped for time: N = {', '.join(map(str, skipped))}")
    if args.out:
        write_report(args, results, skipped, loads, agents, cap, argo, started, nodes,
                     state["runs"], state.get("settings", {}), state.get("commit"))


def write_report(args, results, skipped, loads, agents, cap, argo, started, nodes, state_runs,
                 settings, commit=None):
    args = argparse.Namespace(**{**vars(args), **settings})
    args.sizes = ",".join(str(n) for n in results)
    versions = {}
    with open(os.path.join(ROOT, "tests", "cluster", "versions.env")) as f:
        versions.update(re.findall(r"^(\w+)=(\S+)", f.read(), re.M))
    with open(os.path.join(HERE, "versions.env")) as f:
        versions.update(re.findall(r"^(\w+)=(\S+)", f.read(), re.M))
    commit = commit or subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                      capture_output=True, text=True).stdout.strip()
    lines = [
        "# Capstan beside Argo Rollouts",
        "",
        "Written by `tests/bench/peer/compare.py` (reproduce: `make bench-peer`, or the",
        "command below). Numbers from one run on one test cluster; nothing here passes or",
        "fails on a time.",
        "",
        f"- Command: `tests/bench/peer/compare.py --sizes {args.sizes} --window "
        f"{args.window:.0f} --changes {args.changes}`",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
        f"{(time.time() - started) / 60:.0f} minutes"
        + (f" ({state_runs} invocations on the same cluster)" if state_runs > 1 else ""),
        f"- Machine: {machine()}, shared with other work; load average (1, 5, 15 min) "
        f"before and after each size: {'; '.join(loads)}",
        f"- Capstan: {cap.version()} (commit {commit}, {os.path.relpath(cap.binary, ROOT)}, "
        "`capstan run --namespace=NS --leader_elect=false`)",
        f"- Argo Rollouts: {versions.get('ARGO_ROLLOUTS_VERSION')} built with "
        f"{versions.get('PEER_GOTOOLCHAIN')} (tests/bench/peer/peer.sh; `rollouts-controller "
        "--namespaced --namespace=NS --leader-elect=false`, metrics and health on loopback)",
        f"- Control plane: Kubernetes {versions.get('K8S_VERSION')}, etcd "
        f"{versions.get('ETCD_VERSION')}, KWOK {versions.get('KWOK_VERSION')}, {nodes} fake "
        "nodes (tests/cluster/cluster.sh)",
        f"- User agents counted (API server audit log): {', '.join(agents) or '-'}",
        f"- Converged window: {args.window:.0f} s (the issue asks for 5 minutes"
        f"{'' if args.window >= 300 else '; shortened for time'}), opened once all N "
        f"converged and the side had written nothing for {args.settle:.0f} s",
        "- Crash loop: Capstan as configured above; Argo with `progressDeadlineAbort: true` and "
        f"`progressDeadlineSeconds: {args.argo_progress_deadline}` (default 600) on the Rollout",
    ]
    if skipped:
        lines.append(f"- Skipped for time: N = {', '.join(map(str, skipped))}")
    for name, col in (("Capstan", 0), ("Argo Rollouts", 1)):
        missing = [str(n) for n, r in results.items() if not r[col]]
        if missing:
            lines.append(f"- {name} not measured at N = {', '.join(missing)} (column '-')")
    lines.append("")
    for n, (a, b) in results.items():
        lines += [table(n, a, b), ""]
    lines += [
        "How each figure is taken: see the docstring of tests/bench/peer/compare.py. Latencies",
        "are seen through watches (API server -> this script) on both sides alike; the ratio is",
        "Argo's figure over Capstan's.",
        "",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
