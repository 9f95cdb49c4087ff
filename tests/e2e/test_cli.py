"""`kubectl capstan` end to end: every command through kubectl (which finds the plugin
`kubectl-capstan` on PATH), against the real control plane and a running operator, with
exit codes checked: status (0 Ready, 1 rolled back, 2 timeout), promote, abort, retry,
restart, get (tree, tables, --watch through a pty), history, undo (and the operator's
rule that a return to a revision that ran Ready passes approval), approve (the approval
names the caller), env freeze / unfreeze, rotate, get srot, render, diff, version,
completion, and the errors for a missing Release, a user without RBAC and missing CRDs."""
import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import tempfile
import time

import pytest
import yaml

import kube

CRDS = ("environments.capstan.dev", "releaseapprovals.capstan.dev", "secretrotations.capstan.dev")


@pytest.fixture(scope="module", autouse=True)
def plugin_on_path():
    """kubectl-capstan (the capstan binary under that name) first on PATH, as after
    `make install`."""
    kube.install_crds(*CRDS)
    d = tempfile.mkdtemp(prefix="capstan-plugin-")
    os.symlink(os.path.abspath(os.environ.get("CAPSTAN_BIN", "capstan")),
               os.path.join(d, "kubectl-capstan"))
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{d}:{old}"
    yield
    os.environ["PATH"] = old


@pytest.fixture(scope="module")
def operator(plugin_on_path):
    """`capstan run` over all namespaces (Environments and upstream checks need it)."""
    op = kube.Operator(log_name="capstan-cli").start()
    yield op
    op.stop()


def capstan(*args, check=None, timeout=120, env=None):
    """Runs `kubectl capstan ARGS`; returns the CompletedProcess. `check` is the exit
    code wanted (None: any)."""
    p = subprocess.run(["kubectl", "capstan", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check is not None:
        assert p.returncode == check, (
            f"kubectl capstan {' '.join(args)}: exit {p.returncode}, want {check}\n"
            f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def phase(ns, name):
    return kube.get_release(ns, name).get("status", {}).get("phase")


def test_errors_missing_release_rbac_and_crds():
    # No operator yet: the SecretRotation CRD is removed and put back below.
    with kube.Namespace("cli") as ns:
        p = capstan("get", "release", "nope", "-n", ns, check=1)
        assert f'release "nope" not found in namespace "{ns}"' in p.stderr
        capstan("status", "nope", "-n", ns, "--timeout", "5s", check=1)
        p = capstan("frobnicate", check=1)
        assert 'unknown command "frobnicate"' in p.stderr
        p = capstan("get", "--bogus", check=1)
        assert "unknown flag --bogus" in p.stderr

        # A user without RBAC: a service account with no bindings, by token.
        kube.kubectl("-n", ns, "create", "serviceaccount", "nobody")
        token = kube.kubectl("-n", ns, "create", "token", "nobody").strip()
        cfg = yaml.safe_load(kube.kubectl("config", "view", "--raw", "--minify", "--flatten"))
        cfg["users"] = [{"name": "nobody", "user": {"token": token}}]
        cfg["contexts"][0]["context"]["user"] = "nobody"
        path = os.path.join(tempfile.mkdtemp(), "kubeconfig")
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f)
        p = capstan("--kubeconfig", path, "get", "release", "-n", ns, check=1)
        assert "not allowed" in p.stderr and "cannot list resource" in p.stderr, p.stderr
        # --context and KUBECONFIG work like kubectl's.
        env = dict(os.environ, KUBECONFIG=path)
        p = capstan("promote", "x", "-n", ns, env=env, check=1)
        assert "not allowed" in p.stderr
        ctx = cfg["contexts"][0]["name"]
        p = capstan("--context", ctx, "get", "-n", ns, env=env, check=1)
        assert "not allowed" in p.stderr

    # CRDs not installed: the SecretRotation CRD, removed for a moment.
    kube.kubectl("delete", "crd", "secretrotations.capstan.dev", "--wait=false")
    try:
        kube.wait_until(lambda: not kube.exists("crd", "secretrotations.capstan.dev"), 120,
                        interval=1, what="the SecretRotation CRD gone")
        p = capstan("get", "srot", check=1)
        assert "Capstan CRDs are not installed" in p.stderr, p.stderr
        p = capstan("rotate", "x", check=1)
        assert "Capstan CRDs are not installed" in p.stderr, p.stderr
    finally:
        kube.install_crds(*CRDS)


def test_status_exits_0_on_ready_1_on_rollback_2_on_timeout(operator):
    with kube.Namespace("cli") as ns:
        kube.apply(kube.release("web", "registry.example/web:1"), ns)
        p = capstan("status", "web", "-n", ns, "--timeout", "120s", check=0)
        lines = p.stdout.strip().splitlines()
        assert lines[-1].split()[2] == "Ready", p.stdout
        assert len(lines) == len(set(l.split(" ", 1)[1] for l in lines)), "one line per change"

        kube.set_image(ns, "web", "registry.example/web:crashloop")
        p = capstan("status", "web", "-n", ns, "--timeout", "180s", check=1)
        assert "RolledBack" in p.stderr, p.stderr
        assert kube.deployment_image(ns, "web") == "registry.example/web:1"

        kube.set_image(ns, "web", "registry.example/web:neverready")
        p = capstan("status", "web", "-n", ns, "--timeout", "3s", check=2)
        assert "timed out after 3s" in p.stderr, p.stderr
        p = capstan("status", "web", "-n", ns, "--until", "Sometime", check=1)


def bluegreen(name, image):
    return kube.release(name, image, replicas=1, service={"ports": [{"name": "http", "port": 80,
                                                                     "targetPort": "http"}]},
                        strategy={"type": "BlueGreen", "blueGreen": {
                            "autoPromote": False, "scaleDownDelaySeconds": 5}})


def test_promote_abort_retry_restart(operator):
    with kube.Namespace("cli") as ns:
        kube.apply(bluegreen("pay", "registry.example/pay:1"), ns)
        capstan("status", "pay", "-n", ns, check=0)
        active = kube.get("service", "pay", ns)["spec"]["selector"]["capstan.dev/color"]
        p = capstan("promote", "pay", "-n", ns, check=1)
        assert "not Previewing" in p.stderr

        kube.set_image(ns, "pay", "registry.example/pay:2")
        capstan("status", "pay", "-n", ns, "--until", "Previewing", check=0)
        rev = kube.get_release(ns, "pay")["status"]["currentRevision"]
        p = capstan("promote", "pay", "-n", ns, "--revision", "0000000000", check=1)
        assert f"is revision {rev}" in p.stderr
        p = capstan("promote", "pay", "-n", ns, check=0)
        assert rev in p.stdout
        assert kube.get_release(ns, "pay")["metadata"]["annotations"]["capstan.dev/promote"] == rev
        capstan("status", "pay", "-n", ns, check=0)
        assert kube.get("service", "pay", ns)["spec"]["selector"]["capstan.dev/color"] != active

        # abort: a preview that never gets ready; traffic stays, phase Aborted (status: 1).
        kube.set_image(ns, "pay", "registry.example/pay:neverready")
        kube.wait_until(lambda: phase(ns, "pay") == "Progressing" and kube.get_release(
            ns, "pay")["status"]["observedGeneration"] == kube.get_release(
            ns, "pay")["metadata"]["generation"], 60, what="the new revision in flight")
        p = capstan("abort", "pay", "-n", ns, check=0)
        token = kube.get_release(ns, "pay")["metadata"]["annotations"]["capstan.dev/abort"]
        assert token in p.stdout
        p = capstan("status", "pay", "-n", ns, "--timeout", "60s", check=1)
        assert "Aborted" in p.stderr
        assert kube.get_release(ns, "pay")["status"]["lastAbort"] == token

        # retry: one more attempt at the aborted revision, with a fresh token.
        p = capstan("retry", "pay", "-n", ns, check=0)
        token2 = kube.get_release(ns, "pay")["metadata"]["annotations"]["capstan.dev/retry"]
        assert token2 in p.stdout and token2 != token
        kube.wait_until(lambda: kube.get_release(ns, "pay")["status"].get("lastRetry") == token2,
                        60, what="the retry taken")

        # restart: a new revision with the same images. (Back to pay:2 first: it is what
        # serves, so no preview.)
        kube.set_image(ns, "pay", "registry.example/pay:2")
        capstan("status", "pay", "-n", ns, check=0)
        before = kube.get_release(ns, "pay")["status"]["currentRevision"]
        capstan("restart", "pay", "-n", ns, check=0)
        capstan("status", "pay", "-n", ns, "--until", "Previewing", check=0)
        after = kube.get_release(ns, "pay")["status"]["currentRevision"]
        assert after != before
        capstan("retry", "pay", "-n", ns, check=1)  # nothing failed: nothing to retry


def test_get_tree_tables_and_watch_through_a_pty(operator):
    with kube.Namespace("cli") as ns:
        kube.apply(kube.release("web", "registry.example/web:1"), ns)
        capstan("status", "web", "-n", ns, check=0)
        rev = kube.get_release(ns, "web")["status"]["currentRevision"]
        p = capstan("get", "release", "web", "-n", ns, check=0)
        assert "Release web" in p.stdout and "Ready" in p.stdout and rev in p.stdout
        assert "\033[" not in p.stdout, "no colour when piped"
        assert "ready 2/2" in p.stdout and "└── web-" in p.stdout, p.stdout
        p = capstan("get", "-n", ns, check=0)
        assert p.stdout.splitlines()[0].split()[:3] == ["NAME", "STRATEGY", "PHASE"]
        assert capstan("get", "-A", check=0).stdout.startswith("NAMESPACE")
        assert capstan("get", "rel", "-n", ns, "-o", "name", check=0).stdout == \
            "release.capstan.dev/web\n"
        assert json.loads(capstan("get", "web", "-n", ns, "-o", "json", check=0).stdout)[
            "metadata"]["name"] == "web"

        # --watch in a terminal: colour on, redrawn in place when the phase changes.
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.pop("NO_COLOR", None)
            os.execvp("kubectl", ["kubectl", "capstan", "get", "release", "web", "-n", ns,
                                  "--watch"])
        out = b""

        def read_until(pattern, timeout):
            nonlocal out
            deadline = time.monotonic() + timeout
            while pattern not in out and time.monotonic() < deadline:
                r, _, _ = select.select([fd], [], [], 1)
                if r:
                    try:
                        out += os.read(fd, 65536)
                    except OSError:
                        break
            return pattern in out

        try:
            assert read_until(b"\033[32mReady\033[0m", 30), out.decode(errors="replace")
            mark = len(out)
            # A revision that never gets ready holds the phase at Progressing, so the
            # screen is sure to show it; then a good one takes over.
            kube.set_image(ns, "web", "registry.example/web:neverready")
            assert read_until(b"Progressing", 60), out[mark:].decode(errors="replace")
            kube.set_image(ns, "web", "registry.example/web:2")
            new_rev = kube.wait_phase(ns, "web", "Ready")["status"]["currentRevision"]
            assert read_until(new_rev.encode() + b"   registry.example/web:2", 60)
            screens = out[mark:].count(b"\033[H\033[2J")
            assert screens >= 2, "redrawn in place"
        finally:
            os.kill(pid, signal.SIGINT)
            os.waitpid(pid, 0)
            os.close(fd)

        # NO_COLOR wins even on a terminal: checked on the single screen of `get`.
        pid, fd = pty.fork()
        if pid == 0:
            os.environ["NO_COLOR"] = "1"
            os.execvp("kubectl", ["kubectl", "capstan", "get", "release", "web", "-n", ns])
        out = b""
        try:
            read_until(b"Deployments", 30)
            while True:
                r, _, _ = select.select([fd], [], [], 5)
                if not r:
                    break
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            _, status = os.waitpid(pid, 0)
            os.close(fd)
        assert b"Release web" in out and b"\033[" not in out, out


@contextlib.contextmanager
def approval_policies():
    """The chart's admission policies, which stamp the approver on ReleaseApprovals."""
    policies = subprocess.run(
        ["helm", "template", f"capstan-e2e-{kube.random_suffix()}", kube.CHART, "--show-only",
         "templates/approval-policy.yaml"], capture_output=True, text=True, check=True).stdout
    kube.kubectl("apply", "-f", "-", input=policies)
    try:
        yield
    finally:
        kube.kubectl("delete", "-f", "-", "--ignore-not-found", input=policies, check=False)


@contextlib.contextmanager
def environment(name, spec):
    kube.apply({"apiVersion": "capstan.dev/v1alpha1", "kind": "Environment",
                "metadata": {"name": name}, "spec": spec})
    try:
        yield
    finally:
        kube.kubectl("delete", "environment", name, "--ignore-not-found", "--wait=false",
                     check=False)


def approve(ns, name):
    """kubectl capstan approve, again until the admission policies stamp the approver
    (they take a moment to become active after they are created)."""
    rev = kube.get_release(ns, name)["status"]["currentRevision"]  # the one waiting
    first = capstan("approve", name, "-n", ns, "--comment", "CHG-1")
    if first.returncode == 0 and "approved by" in first.stdout:
        return first  # found the revision by itself, as a person runs it

    def stamped():
        kube.kubectl("-n", ns, "delete", "releaseapprovals", "--all")
        p = capstan("approve", name, "-n", ns, "--revision", rev, "--comment", "CHG-1",
                    check=0)
        return p if "approved by" in p.stdout else None
    return kube.wait_until(stamped, 30, interval=1, what="an approval stamped by admission")


def test_approve_history_undo_and_the_revert_passes_approval(operator):
    u = kube.random_suffix()
    with approval_policies(), kube.Namespace("cli") as ns, environment(
            f"prod-{u}", {"namespaces": [ns], "policies": {"requireApproval": True,
                                                          "fourEyes": False}}):
        # fourEyes off: one admin both writes and approves here (no release policy
        # records the author; test_gate_bypass.py covers four-eyes).
        kube.apply(kube.release("shop", "registry.example/shop:1"), ns)
        capstan("status", "shop", "-n", ns, "--until", "Waiting", check=0)
        p = capstan("get", "shop", "-n", ns, check=0)
        assert "kubectl capstan approve shop -n " + ns in p.stdout, p.stdout
        p = approve(ns, "shop")
        approval = kube.get("releaseapprovals", namespace=ns)["items"][0]
        assert approval["spec"]["approvedBy"] in p.stdout
        waiting = kube.get_release(ns, "shop")
        assert approval["spec"]["digest"] == waiting["status"]["desiredDigest"]
        assert approval["spec"]["releaseUID"] == waiting["metadata"]["uid"]
        assert approval["spec"]["comment"] == "CHG-1"
        capstan("status", "shop", "-n", ns, check=0)
        rev1 = kube.get_release(ns, "shop")["status"]["currentRevision"]

        kube.set_image(ns, "shop", "registry.example/shop:2")
        capstan("status", "shop", "-n", ns, "--until", "Waiting", check=0)
        assert kube.deployment_image(ns, "shop") == "registry.example/shop:1"
        approve(ns, "shop")
        capstan("status", "shop", "-n", ns, check=0)
        assert kube.deployment_image(ns, "shop") == "registry.example/shop:2"

        p = capstan("history", "shop", "-n", ns, check=0)
        assert "registry.example/shop:1" in p.stdout and "registry.example/shop:2" in p.stdout
        rows = json.loads(capstan("history", "shop", "-n", ns, "-o", "json", check=0).stdout)
        assert [r["images"] for r in rows][:2] == [["registry.example/shop:2"],
                                                   ["registry.example/shop:1"]]
        number = next(r["revision"] for r in rows if r["hash"] == rev1)

        # -o yaml --dry-run: what to commit, nothing changed.
        p = capstan("undo", "shop", "-n", ns, "--to-revision", str(number), "-o", "yaml",
                    "--dry-run", check=0)
        manifest = yaml.safe_load(p.stdout)
        assert manifest["spec"]["template"]["spec"]["containers"][0]["image"] == \
            "registry.example/shop:1"
        assert "capstan.dev/revision" not in json.dumps(manifest["spec"]["template"])
        assert "GitOps" in p.stderr
        assert kube.get_release(ns, "shop")["spec"]["template"]["spec"]["containers"][0][
            "image"] == "registry.example/shop:2"

        # undo to revision 1 (ran Ready here): no approval needed (its approval is
        # withdrawn first, so only the revert rule can let it through), recorded.
        kube.kubectl("-n", ns, "delete", "releaseapprovals", "--all")
        p = capstan("undo", "shop", "-n", ns, "--to-revision", rev1, check=0)
        assert "GitOps" in p.stderr
        r = kube.wait_phase(ns, "shop", "Ready")
        assert r["status"]["currentRevision"] == rev1
        assert kube.deployment_image(ns, "shop") == "registry.example/shop:1"
        assert rev1 in r["status"]["revert"]
        kube.wait_until(lambda: kube.events(ns, "Rollback"), 10, what="a Rollback event")
        p = capstan("undo", "shop", "-n", ns, "--to-revision", "nosuchrev", check=1)
        assert "has no revision nosuchrev" in p.stderr

        # A new revision after that waits for approval again; once it runs, the revert
        # record is gone.
        kube.set_image(ns, "shop", "registry.example/shop:3")
        capstan("status", "shop", "-n", ns, "--until", "Waiting", check=0)
        assert kube.deployment_image(ns, "shop") == "registry.example/shop:1"
        approve(ns, "shop")
        r = kube.wait_phase(ns, "shop", "Ready")
        assert kube.deployment_image(ns, "shop") == "registry.example/shop:3"
        assert not r["status"].get("revert")


def test_env_freeze_holds_a_change_and_unfreeze_releases_it(operator):
    u = kube.random_suffix()
    with kube.Namespace("cli") as ns, environment(f"stage-{u}", {"namespaces": [ns]}):
        kube.apply(kube.release("web", "registry.example/web:1"), ns)
        capstan("status", "web", "-n", ns, check=0)
        p = capstan("env", "freeze", f"stage-{u}", "--until", "1h", "--reason", "INC-1", check=0)
        assert "frozen until" in p.stdout
        capstan("env", "freeze", f"stage-{u}", "--until", "yesterday", check=1)
        # The operator has seen the frozen Environment before the change comes.
        kube.wait_until(lambda: (lambda e: e.get("status", {}).get("observedGeneration") ==
                                 e["metadata"]["generation"])(kube.get("environment",
                                                                       f"stage-{u}")),
                        30, what="the Environment's new generation observed")
        kube.set_image(ns, "web", "registry.example/web:2")
        r = kube.wait_phase(ns, "web", "Waiting")
        assert kube.condition(r, "Reconciling")["reason"] == "FrozenUntil"
        assert kube.deployment_image(ns, "web") == "registry.example/web:1"
        p = capstan("env", "get", f"stage-{u}", check=0)
        assert "INC-1" in p.stdout and "ACTIVE" in p.stdout, p.stdout
        p = capstan("env", "list", check=0)
        assert f"stage-{u}" in p.stdout
        p = capstan("get", "web", "-n", ns, check=0)
        assert f"kubectl capstan env unfreeze stage-{u}" in p.stdout, p.stdout

        p = capstan("env", "unfreeze", f"stage-{u}", check=0)
        assert "INC-1" in p.stdout
        capstan("status", "web", "-n", ns, check=0)
        assert kube.deployment_image(ns, "web") == "registry.example/web:2"
        capstan("env", "unfreeze", f"stage-{u}", check=1)  # nothing left to remove
        capstan("env", "get", f"nope-{u}", check=1)


def test_rotate_and_get_srot(operator):
    with kube.Namespace("cli") as ns:
        kube.apply({"apiVersion": "capstan.dev/v1alpha1", "kind": "SecretRotation",
                    "metadata": {"name": "jwt"},
                    "spec": {"secretName": "jwt", "interval": "168h", "keys": [
                        {"name": "k", "randomBytes": {"length": 16, "encoding": "hex"}}]}}, ns)
        kube.wait_until(lambda: kube.get("srot", "jwt", ns).get("status", {}).get(
            "lastRotationTime"), 60, what="the first rotation")
        version = kube.get("srot", "jwt", ns)["status"]["currentVersion"]
        p = capstan("get", "srot", "-n", ns, check=0)
        assert p.stdout.split("\n")[0].split() == ["NAME", "SECRET", "INTERVAL", "LAST", "NEXT",
                                                   "PHASE"]
        assert "jwt" in p.stdout and "in 6d" in p.stdout, p.stdout
        p = capstan("rotate", "jwt", "-n", ns, check=0)
        token = kube.get("srot", "jwt", ns)["metadata"]["annotations"]["capstan.dev/rotate"]
        assert token in p.stdout
        kube.wait_until(lambda: kube.get("srot", "jwt", ns)["status"].get(
            "currentVersion") != version, 60, what="a new version")
        capstan("rotate", "nope", "-n", ns, check=1)


def test_render_diff_version_completion(operator):
    example = os.path.join(kube.SOURCE_DIR, "examples", "release.yaml")
    p = capstan("render", "-f", example, check=0)
    assert "kind: Deployment" in p.stdout
    capstan("render", "-f", "/nonexistent.yaml", check=1)

    with kube.Namespace("cli") as ns:
        rel = kube.release("web", "registry.example/web:1")
        path = os.path.join(tempfile.mkdtemp(), "web.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(rel, f)
        p = capstan("diff", "-f", path, "-n", ns, check=1)  # not there yet: all new
        assert "+  name: web" in p.stdout, p.stdout
        kube.apply(rel, ns)
        capstan("diff", "-f", path, "-n", ns, check=0)
        rel["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/web:2"
        with open(path, "w") as f:
            yaml.safe_dump(rel, f)
        p = capstan("diff", "-f", path, "-n", ns, check=1)
        lines = p.stdout.splitlines()
        assert any(l.startswith("-") and "image: registry.example/web:1" in l for l in lines), \
            p.stdout
        assert any(l.startswith("+") and "image: registry.example/web:2" in l for l in lines), \
            p.stdout

    p = capstan("version", check=0)
    assert p.stdout.startswith("client: kubectl-capstan ")
    assert "operator:" in p.stdout
    assert json.loads(capstan("version", "-o", "json", check=0).stdout)["client"]["version"]

    for shell in ("bash", "zsh"):
        p = capstan("completion", shell, check=0)
        assert "kubectl-capstan" in p.stdout
    script = capstan("completion", "bash", check=0).stdout
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    capstan("completion", "fish", check=1)
