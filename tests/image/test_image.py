"""The operator image (make image), run with podman against the real control plane the
way a kubelet runs the chart's Deployment: the chart's ServiceAccount token, the cluster
CA and the namespace file at /var/run/secrets/kubernetes.io/serviceaccount/,
KUBERNETES_SERVICE_HOST/PORT, the chart's args, env and securityContext (uid 65532,
read-only root file system, no capabilities, no privilege escalation). No kubeconfig
anywhere in the container.

It proves: in-cluster configuration works; /healthz and /readyz answer as the chart's
probes expect; a Release applied with kubectl becomes Ready and a crash-looping revision
rolls back; SIGTERM (podman stop) releases the Lease and exits 0 within the chart's
terminationGracePeriodSeconds; nothing is written to the root file system; no
container, process or mount is left behind."""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import kube  # noqa: E402

kube.load_cluster_env()

SRC = os.environ.get("CAPSTAN_SOURCE_DIR", os.path.join(HERE, "..", ".."))
CHART = os.path.join(SRC, "charts", "capstan")
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# What a kubelet (containerd, CRI-O) mounts or creates in a container's root file system
# besides the volumes: these may appear in `podman diff` without anyone writing to /.
# (The image is FROM scratch: /var/run is no link to /run there, and the ServiceAccount
# mount creates its directories.)
RUNTIME_PATHS = {"/etc", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/run",
                 "/run/.containerenv", "/run/secrets", "/run/secrets/kubernetes.io",
                 "/run/secrets/kubernetes.io/serviceaccount", "/var", "/var/run",
                 "/var/run/secrets", "/var/run/secrets/kubernetes.io",
                 "/var/run/secrets/kubernetes.io/serviceaccount", "/dev", "/proc", "/sys"}


def podman(*args, check=True, timeout=120):
    """podman with the storage and runtime settings make image uses (containers.sh)."""
    p = subprocess.run([os.path.join(HERE, "podman.sh"), *args], capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


def image_name():
    return subprocess.run([os.path.join(HERE, "image.sh"), "name"], capture_output=True,
                          text=True, check=True).stdout.strip()


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def probe_ok(port, probe):
    """A kubelet httpGet probe succeeds on 200 <= status < 400."""
    return 200 <= http_get(port, probe["httpGet"]["path"]) < 400


def resolve_env(env, namespace):
    """The chart's env as the kubelet resolves it (downward API fieldRefs)."""
    out = {}
    for e in env:
        if "value" in e:
            out[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            out[e["name"]] = namespace
        else:
            raise AssertionError(f"the test does not know how a kubelet fills {e}")
    return out


def container_mounts(cid):
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if cid in line]


@pytest.fixture(scope="module")
def image():
    name = image_name()
    if podman("image", "exists", name, check=False).returncode != 0:
        pytest.fail(f"{name} is not built: run `make image` first")
    return name


def test_image_labels_and_version(image):
    cfg = json.loads(podman("image", "inspect", image).stdout)[0]
    labels = cfg["Labels"]
    out = podman("run", "--rm", "--network", "none", image, "version").stdout.strip()
    assert out == f"capstan {labels['org.opencontainers.image.version']}"
    assert image.endswith(":" + labels["org.opencontainers.image.version"])
    for key in ("source", "revision", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert cfg["Config"]["User"] == "65532:65532"


@pytest.fixture(scope="module")
def deployment_chart():
    """The rendered chart for one install in a throw-away namespace, its RBAC applied."""
    kube.install_crds()
    with kube.Namespace("img") as ns:
        name = f"capstan-{kube.random_suffix()}"
        port = kube.free_port()
        # watchNamespace keeps this operator off other tests' Releases; metrics.port a
        # free port, since the container shares the host's network. Both are chart values.
        text = subprocess.run(
            ["helm", "template", name, CHART, "--namespace", ns, "--set",
             f"watchNamespace={ns}", "--set", f"metrics.port={port}", "--set", "replicas=1"],
            capture_output=True, text=True, check=True).stdout
        objs = [d for d in yaml.safe_load_all(text) if d]
        rbac = [d for d in objs if d["kind"] in ("ServiceAccount", "ClusterRole",
                                                   "ClusterRoleBinding", "Role",
                                                   "RoleBinding")
                and not d["metadata"]["name"].endswith("-release-approver")]
        kube.apply(rbac)
        try:
            yield {"ns": ns, "name": name, "port": port,
                   "deployment": next(d for d in objs if d["kind"] == "Deployment")}
        finally:
            for d in rbac:
                if d["kind"].startswith("Cluster"):
                    kube.kubectl("delete", d["kind"].lower(), d["metadata"]["name"],
                                 "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def sa_files(deployment_chart, tmp_path_factory):
    """token, ca.crt and namespace as the kubelet projects them (files 0644 in a 0755
    directory; the kubelet's default for a projected volume)."""
    ns = deployment_chart["ns"]
    pod = deployment_chart["deployment"]["spec"]["template"]["spec"]
    d = os.path.join(os.environ.get("CAPSTAN_CLUSTER_DIR", str(tmp_path_factory.mktemp("sa"))),
                     f"sa-{deployment_chart['name']}")
    os.makedirs(d)
    os.chmod(d, 0o755)
    token = kube.kubectl("create", "token", pod["serviceAccountName"], "-n", ns,
                         "--duration=1h").strip()
    admin = json.loads(kube.kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster = admin["clusters"][0]["cluster"]
    if "certificate-authority-data" in cluster:
        import base64
        ca = base64.b64decode(cluster["certificate-authority-data"])
    else:
        with open(cluster["certificate-authority"], "rb") as f:
            ca = f.read()
    for fname, content in (("token", token.encode()), ("ca.crt", ca),
                           ("namespace", ns.encode())):
        with open(os.path.join(d, fname), "wb") as f:
            f.write(content)
        os.chmod(os.path.join(d, fname), 0o644)
    yield {"dir": d, "server": cluster["server"]}
    shutil.rmtree(d, ignore_errors=True)


class Pod:
    """The chart's capstan container, run by podman as a kubelet would run it."""

    def __init__(self, image, chart, sa):
        dep = chart["deployment"]
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        self.ns = chart["ns"]
        self.name = f"{chart['name']}-pod"
        self.container = c
        self.grace = pod["terminationGracePeriodSeconds"]
        self.port = next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics")
        psc, sc = pod["securityContext"], c["securityContext"]
        user = sc.get("runAsUser", psc.get("runAsUser"))
        group = sc.get("runAsGroup", psc.get("runAsGroup"))
        # The chart's securityContext, field by field; a field the test does not map fails.
        known = {"runAsNonRoot", "runAsUser", "runAsGroup", "readOnlyRootFilesystem",
                 "allowPrivilegeEscalation", "capabilities", "seccompProfile"}
        assert set(sc) <= known and set(psc) <= known, (sc, psc)
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"  # podman's default profile
        sec = ["--user", f"{user}:{group}"]
        if sc.get("readOnlyRootFilesystem"):
            # Kubernetes adds no tmpfs on /tmp or /run; neither may podman.
            sec += ["--read-only", "--read-only-tmpfs=false"]
        if sc.get("allowPrivilegeEscalation") is False:
            sec += ["--security-opt", "no-new-privileges"]
        for cap in sc.get("capabilities", {}).get("drop", []):
            sec += ["--cap-drop", cap.lower()]
        assert not sc.get("capabilities", {}).get("add")
        host, _, port = sa["server"].removeprefix("https://").rpartition(":")
        env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
               **resolve_env(c.get("env", []), self.ns)}
        self.run_args = [
            "run", "--detach", "--name", self.name, "--hostname", self.name,
            "--network", "host", *sec,
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
            "--volume", f"{sa['dir']}:{SA_DIR}:ro",
            *[a for k, v in env.items() for a in ("--env", f"{k}={v}")],
            "--stop-timeout", str(self.grace),
            image, *c.get("args", [])]
        self.cid = None

    def start(self):
        self.cid = podman(*self.run_args).stdout.strip()
        return self

    def state(self):
        return json.loads(podman("inspect", "--format", "{{json .State}}", self.name).stdout)

    def logs(self):
        p = podman("logs", self.name, check=False)
        return p.stdout + p.stderr

    def remove(self):
        podman("rm", "--force", "--time", "0", "--ignore", self.name, check=False)


@pytest.fixture(scope="module")
def pod(image, deployment_chart, sa_files):
    p = Pod(image, deployment_chart, sa_files)
    try:
        yield p.start()
    finally:
        if p.cid:
            sys.stderr.write(p.logs()[-6000:])
        p.remove()


def test_in_cluster_config_probes_and_lease(pod):
    readiness = pod.container["readinessProbe"]
    liveness = pod.container["livenessProbe"]
    assert readiness["httpGet"]["port"] == liveness["httpGet"]["port"] == "metrics"
    kube.wait_until(lambda: probe_ok(pod.port, liveness), 30, what="liveness /healthz")
    kube.wait_until(lambda: probe_ok(pod.port, readiness), 60, what="readiness /readyz")
    logs = pod.logs()
    assert "from in-cluster service account" in logs, logs[-3000:]
    assert "kubeconfig" not in logs.lower(), logs[-3000:]
    # A ServiceAccount token, never a kubeconfig: none is passed, none is in the image.
    env = json.loads(podman("inspect", "--format", "{{json .Config.Env}}", pod.name).stdout)
    assert not [e for e in env if e.startswith("KUBECONFIG=")], env
    # The image has no shell to look with: copying the directory out must fail.
    home = next((e.split("=", 1)[1] for e in env if e.startswith("HOME=")), "/")
    out = os.path.join(os.environ.get("CAPSTAN_CLUSTER_DIR", "/tmp"), f"kube-{pod.name}")
    got = podman("cp", f"{pod.name}:{home.rstrip('/')}/.kube", out, check=False)
    assert got.returncode != 0 and not os.path.exists(out), got.stdout + got.stderr
    lease = kube.wait_until(lambda: kube.get("lease", "capstan-leader", pod.ns)
                            ["spec"].get("holderIdentity"), 30, what="the Lease held")
    assert lease.startswith(pod.name + "_"), lease


def test_release_ready_then_crashloop_rolls_back(pod):
    ns = pod.ns
    kube.apply(kube.release("shop", "registry.example/shop:1", replicas=2), ns)
    kube.wait_phase(ns, "shop", "Ready")
    kube.set_image(ns, "shop", "registry.example/shop:crashloop")
    r = kube.wait_phase(ns, "shop", "RolledBack")
    assert kube.condition(r, "Stalled")["status"] == "True"
    kube.wait_until(lambda: kube.deployment_image(ns, "shop") == "registry.example/shop:1",
                    30, what="the stable image back on the Deployment")
    assert kube.events(ns, "RolledBack"), "a RolledBack Event"
    assert "forbidden" not in pod.logs().lower()


def test_nothing_written_to_the_root_file_system(pod):
    changes = json.loads(podman("diff", "--format", "json", pod.name).stdout or "{}")
    written = {p for kind in ("changed", "added", "deleted") for p in changes.get(kind) or []}
    assert written <= RUNTIME_PATHS, sorted(written - RUNTIME_PATHS)
    assert "read-only file system" not in pod.logs().lower()


def test_sigterm_releases_the_lease_and_exits_0_within_the_grace_period(pod):
    assert kube.get("lease", "capstan-leader", pod.ns)["spec"].get("holderIdentity")
    # podman stop sends the image's stop signal (SIGTERM), waits the chart's grace
    # period, then SIGKILLs (exit code 137): exit code 0 means it ended in time by itself.
    podman("stop", "--time", str(pod.grace), pod.name, timeout=pod.grace + 30)
    state = pod.state()
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 0, state
    assert not kube.get("lease", "capstan-leader", pod.ns)["spec"].get("holderIdentity")


def test_nothing_left_behind(image, deployment_chart, sa_files):
    # Runs last in this module: remove the container the way the fixture does, then look.
    p = Pod(image, deployment_chart, sa_files)
    cid = podman("inspect", "--format", "{{.Id}}", p.name).stdout.strip()
    p.remove()
    assert podman("container", "exists", p.name, check=False).returncode == 1
    assert not container_mounts(cid)
    procs = subprocess.run(["pgrep", "-f", cid], capture_output=True, text=True).stdout
    assert not procs.strip(), procs
