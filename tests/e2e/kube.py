"""Small helpers to drive a cluster the way users do: kubectl, YAML, polling."""
import contextlib
import json
import os
import subprocess
import threading
import time
import uuid

import yaml

SOURCE_DIR = os.environ.get("CAPSTAN_SOURCE_DIR",
                            os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(SOURCE_DIR, "charts", "capstan")


def random_suffix():
    """Six hex digits, for names that must not collide between runs."""
    return uuid.uuid4().hex[:6]


def load_cluster_env():
    """Reads KUBECONFIG and PATH from the cluster fixture's env file."""
    cluster_dir = os.environ.get("CAPSTAN_CLUSTER_DIR")
    if not cluster_dir:
        return
    env_file = os.path.join(cluster_dir, "env")
    with open(env_file) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("export "):
                continue
            key, _, value = line[len("export "):].partition("=")
            value = value.replace("$PATH", os.environ.get("PATH", ""))
            os.environ[key] = value


def kubectl(*args, input=None, check=True, timeout=120):
    """Runs kubectl; returns stdout. Raises with stderr on failure when check."""
    p = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p if not check else p.stdout


def apply(obj_or_yaml, namespace=None):
    text = obj_or_yaml if isinstance(obj_or_yaml, str) else yaml.safe_dump_all(
        obj_or_yaml if isinstance(obj_or_yaml, list) else [obj_or_yaml])
    args = ["apply", "-f", "-"]
    if namespace:
        args += ["-n", namespace]
    return kubectl(*args, input=text)


def get(kind, name=None, namespace=None, selector=None):
    args = ["get", kind]
    if name:
        args.append(name)
    if namespace:
        args += ["-n", namespace]
    if selector:
        args += ["-l", selector]
    args += ["-o", "json"]
    return json.loads(kubectl(*args))


def exists(kind, name, namespace=None):
    args = ["get", kind, name, "--ignore-not-found", "-o", "name"]
    if namespace:
        args += ["-n", namespace]
    return bool(kubectl(*args).strip())


def wait_until(predicate, timeout=60, interval=0.25, what="condition"):
    """Polls predicate until it returns a truthy value; returns that value."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # keep polling; report the last error on timeout
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_error})" if last_error else ""))


class Namespace:
    """A throw-away namespace; deleted (without waiting) on exit."""

    def __init__(self, prefix="e2e"):
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"

    def __enter__(self):
        kubectl("create", "namespace", self.name)
        wait_until(lambda: exists("serviceaccount", "default", self.name), 30,
                   what=f"default serviceaccount in {self.name}")
        return self.name

    def __exit__(self, *exc):
        kubectl("delete", "namespace", self.name, "--wait=false", check=False)


def deployment(name, image, replicas=1, labels=None):
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Operator:
    """Runs `capstan run` against the test cluster, as a user would on their laptop."""

    def __init__(self, *extra_args, log_name="capstan"):
        self.port = free_port()
        self.args = [os.environ.get("CAPSTAN_BIN", "capstan"), "run",
                     f"--health_address=127.0.0.1:{self.port}", "--log_format=json",
                     f"--leader_election_id=capstan-e2e-{random_suffix()}",
                     # The tests drive every controller; the binary's default leaves
                     # SecretRotation off (least privilege).
                     *([] if any(a.startswith("--secret_rotation") for a in extra_args)
                       else ["--secret_rotation=true"]), *extra_args]
        log_dir = os.environ.get("CAPSTAN_CLUSTER_DIR", "/tmp")
        self.log_path = os.path.join(log_dir, f"{log_name}-{random_suffix()}.log")
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self.get("/readyz")[0] == 200, 30, what="operator /readyz")
        except BaseException:
            # A test whose operator never got ready never reaches its teardown: stop the
            # process here, or it keeps acting on the cluster after the test failed.
            self.stop()
            raise
        return self

    def get(self, path):
        import urllib.request
        import urllib.error
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def writes(self):
        """API writes sent so far (POST, PUT, PATCH, DELETE), from /metrics."""
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith("capstan_rest_requests_total{") and any(
                    f'verb="{v}"' in line for v in ("POST", "PUT", "PATCH", "DELETE")):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def reconciles(self):
        """Reconciles finished so far, from /metrics."""
        _, text = self.get("/metrics")
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                   if l.startswith("capstan_reconcile_total{"))

    def looked(self, reconciles=3):
        """Returns once `reconciles` more reconciles have finished, so the operator has
        provably looked at the state as it is now (the first may have been under way
        already). Run with --resync_seconds=1 so reconciles keep coming; use it before
        asserting that something did not happen, instead of a sleep."""
        base = self.reconciles()
        wait_until(lambda: self.reconciles() >= base + reconciles, 60,
                   what=f"{reconciles} more reconciles")

    def writes_while_idle(self):
        """API writes across four reconciles, counted once two more have let the last
        writes' watch events settle. Run with --resync_seconds=1 so reconciles keep coming."""
        base = self.reconciles()
        wait_until(lambda: self.reconciles() >= base + 2, 30, what="two resyncs")
        writes = self.writes()
        base = self.reconciles()
        wait_until(lambda: self.reconciles() >= base + 4, 30, what="four more resyncs")
        return self.writes() - writes

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def logs(self):
        with open(self.log_path) as f:
            return f.read()


class FaultProxy:
    """tests/tools/faultproxy.py in front of the test cluster's API server: a client
    pointed at `kubeconfig` goes through it. Rules (see the tool's docstring) are given
    at start or added and removed while it runs; `stats()` is its request log."""

    def __init__(self, *rules):
        cluster_dir = os.environ.get("CAPSTAN_CLUSTER_DIR", "/tmp")
        self.kubeconfig = os.path.join(cluster_dir, f"faultproxy-{random_suffix()}.kubeconfig")
        args = ["python3", os.path.join(SOURCE_DIR, "tests", "tools", "faultproxy.py"),
                "--kubeconfig", os.environ["KUBECONFIG"], "--port", "0",
                "--write-kubeconfig", self.kubeconfig]
        for r in rules:
            args += ["--rule", json.dumps(r)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("faultproxy listening on"), line
        self.url = "http://" + line.split()[-1]

    def _call(self, method, path, body=None):
        import urllib.request
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read().decode() or "{}")

    def add(self, *rules):
        return self._call("POST", "/__faults/rules", list(rules))

    def clear(self):
        return self._call("DELETE", "/__faults/rules")

    def cut(self):
        return self._call("POST", "/__faults/cut", {})

    def stats(self):
        return self._call("GET", "/__faults/stats")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Watch:
    """`kubectl get --raw ...?watch=true`: one JSON watch event per line."""

    def __init__(self, path, on_event):
        self.proc = subprocess.Popen(["kubectl", "get", "--raw", path], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._run, args=(on_event,), daemon=True)
        self.thread.start()

    def _run(self, on_event):
        for line in self.proc.stdout:
            line = line.strip()
            if line:
                on_event(json.loads(line))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def install_crds(*also_wait_for):
    """Applies crds/ and waits until the Release CRD (and each CRD named) is established."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", os.path.join(SOURCE_DIR, "crds"))
    for crd in ("releases.capstan.dev", *also_wait_for):
        kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


@contextlib.contextmanager
def running(prefix, *args):
    """A throw-away namespace and `capstan run` watching only it; yields (namespace, Operator)."""
    with Namespace(prefix) as ns:
        op = Operator(f"--namespace={ns}", *args).start()
        try:
            yield ns, op
        finally:
            op.stop()


def release(name, image, replicas=2, **spec):
    body = {
        "apiVersion": "capstan.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image,
                                         "ports": [{"name": "http", "containerPort": 8080}]}]},
            },
            **spec,
        },
    }
    if "autoscaling" in spec:
        del body["spec"]["replicas"]
    return body


def get_release(ns, name):
    return get("release", name, ns)


def wait_phase(ns, name, phase, timeout=90):
    """Waits until the Release is in `phase` for its current spec (observedGeneration is
    the generation); returns the Release."""
    def check():
        r = get_release(ns, name)
        st = r.get("status", {})
        if st.get("phase") == phase and st.get("observedGeneration") == r["metadata"]["generation"]:
            return r
        return None
    return wait_until(check, timeout, what=f"release {ns}/{name} phase {phase}")


def set_image(ns, name, image):
    """Sets the image of the Release's first container, as a user would with kubectl."""
    kubectl("-n", ns, "patch", "release", name, "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]))


def deployment_image(ns, name):
    """The image of the Deployment's first container."""
    return get("deployment", name, ns)["spec"]["template"]["spec"]["containers"][0]["image"]


def events(ns, reason=None):
    """The namespace's Events (events.k8s.io), only those with `reason` when given."""
    items = get("events.events.k8s.io", namespace=ns)["items"]
    return [e for e in items if reason is None or e.get("reason") == reason]


def condition(obj, type_):
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return c
    return {}
