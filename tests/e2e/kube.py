"""Small helpers to drive a cluster the way users do: kubectl, YAML, polling."""
import json
import os
import subprocess
import time
import uuid

import yaml


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
