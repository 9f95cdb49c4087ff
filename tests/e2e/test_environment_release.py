"""Environments applied to Releases on the real control plane: each environment's
configuration lands in its Releases' pods; production waits for an approval of the
exact revision; a change inside a freeze window waits until it ends; production waits
until the same revision was Ready in staging for the soak time; an emergency release
in a freeze proceeds, and a broken one still rolls back.

`capstan run` watches all namespaces here: the Environment controller (which publishes
what is Ready where, for upstream checks) only runs so."""
import contextlib
import datetime
import json
import subprocess

import pytest
import yaml

import kube

@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds("environments.capstan.dev", "releaseapprovals.capstan.dev")


@contextlib.contextmanager
def setup(*envs, namespaces=1):
    """Namespaces, Environments (cluster-scoped, deleted at the end) and an operator
    over all namespaces."""
    with contextlib.ExitStack() as stack:
        names = [stack.enter_context(kube.Namespace("envrel")) for _ in range(namespaces)]
        objs = [{"apiVersion": "capstan.dev/v1alpha1", "kind": "Environment",
                 "metadata": {"name": name}, "spec": spec(names)} for name, spec in envs]
        kube.apply(objs)
        stack.callback(lambda: [kube.kubectl("delete", "environment", o["metadata"]["name"],
                                             "--ignore-not-found", "--wait=false", check=False)
                                for o in objs])
        op = kube.Operator(log_name="capstan-envrel").start()
        stack.callback(op.stop)
        yield names, op


def container_env(ns, name):
    c = kube.get("deployment", name, ns)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def approval_policies(template="templates/approval-policy.yaml", *sets):
    """The chart's admission policies (by default those that stamp the approver on
    ReleaseApprovals)."""
    args = [a for v in sets for a in ("--set", v)]
    policies = subprocess.run(
        ["helm", "template", f"capstan-e2e-{kube.random_suffix()}", kube.CHART, *args,
         "--show-only", template], capture_output=True, text=True, check=True).stdout
    kube.kubectl("apply", "-f", "-", input=policies)
    if "release-author" in policies:
        wait_release_policy_active()
    try:
        yield
    finally:
        kube.kubectl("delete", "-f", "-", "--ignore-not-found", input=policies, check=False)


def approve(ns, release, revision):
    """A ReleaseApproval of what `release` waits with now: its desired-state digest and
    uid (what `kubectl capstan approve` fills in)."""
    r = kube.get_release(ns, release)
    body = yaml.safe_dump({"apiVersion": "capstan.dev/v1alpha1", "kind": "ReleaseApproval",
                           "metadata": {"name": f"{release}-{revision}", "namespace": ns},
                           "spec": {"release": release, "revision": revision,
                                    "digest": r["status"]["desiredDigest"],
                                    "releaseUID": r["metadata"]["uid"]}})

    def created():
        p = kube.kubectl("create", "-f", "-", input=body, check=False)
        if p.returncode != 0:
            return None
        got = kube.get("releaseapproval", f"{release}-{revision}", ns)["spec"]
        if not got.get("approvedBy"):  # admission policies not active yet: try again
            kube.kubectl("-n", ns, "delete", "releaseapproval", f"{release}-{revision}")
            return None
        return got
    return kube.wait_until(created, 30, interval=1, what="an approval stamped by admission")


def wait_release_policy_active():
    """Until admission stamps capstan.dev/changed-by (a server-side dry run of a
    Release create runs every admission policy and changes nothing)."""
    probe = json.dumps(kube.release(f"probe-{kube.random_suffix()}", "registry.example/p:1"))

    def stamped():
        p = kube.kubectl("-n", "default", "create", "--dry-run=server", "-o", "json", "-f", "-",
                         input=probe, check=False)
        return p.returncode == 0 and "capstan.dev/changed-by" in p.stdout
    kube.wait_until(stamped, 60, interval=1, what="the release admission policies active")


def declare_emergency(ns, release, reason, as_user=()):
    """Sets capstan.dev/emergency, again until admission records who did (policies
    take a moment to become active after they are created)."""
    def recorded():
        kube.kubectl("-n", ns, "annotate", "release", release, "capstan.dev/emergency-",
                     *as_user, check=False)
        p = kube.kubectl("-n", ns, "annotate", "release", release,
                         f"capstan.dev/emergency={reason}", *as_user, check=False)
        return p.returncode == 0 and kube.get_release(ns, release)["metadata"].get(
            "annotations", {}).get("capstan.dev/emergency-by")
    return kube.wait_until(recorded, 30, interval=1, what="the emergency recorded by admission")


def test_config_per_environment_and_approval_of_one_revision():
    u = kube.random_suffix()
    dev = (f"dev-{u}", lambda ns: {"namespaces": [ns[0]], "defaults": {
        "env": [{"name": "LOG_LEVEL", "value": "debug"}], "labels": {"environment": "dev"}}})
    prod = (f"prod-{u}", lambda ns: {"namespaces": [ns[1]], "defaults": {
        "env": [{"name": "LOG_LEVEL", "value": "warn"}], "labels": {"environment": "prod"}},
        # One admin writes and approves here; test_gate_bypass.py covers four-eyes.
        "policies": {"requireApproval": True, "fourEyes": False}})
    with approval_policies(), setup(dev, prod, namespaces=2) as ((ns_dev, ns_prod), op):
        for ns in (ns_dev, ns_prod):
            kube.apply(kube.release("shop", "registry.example/shop:1"), ns)
        kube.wait_phase(ns_dev, "shop", "Ready")
        assert container_env(ns_dev, "shop") == {"LOG_LEVEL": "debug"}
        assert kube.get_release(ns_dev, "shop")["status"]["environment"] == f"dev-{u}"

        r = kube.wait_phase(ns_prod, "shop", "Waiting")
        assert kube.condition(r, "Reconciling")["reason"] == "AwaitingApproval"
        assert kube.condition(r, "Stalled")["status"] == "False"
        assert not kube.exists("deployment", "shop", ns_prod), "nothing runs before approval"
        rev = r["status"]["currentRevision"]
        assert rev in r["status"]["message"]
        assert approve(ns_prod, "shop", rev)["approvedBy"]
        r = kube.wait_phase(ns_prod, "shop", "Ready")
        assert container_env(ns_prod, "shop") == {"LOG_LEVEL": "warn"}
        pod_labels = kube.get("deployment", "shop", ns_prod)["spec"]["template"]["metadata"][
            "labels"]
        assert pod_labels["environment"] == "prod"
        kube.wait_until(lambda: kube.events(ns_prod, "Approved"), 10, what="an Approved event")

        # Approving revision N does not approve N+1: the next image waits again while
        # the approved one keeps running.
        kube.set_image(ns_prod, "shop", "registry.example/shop:2")
        r = kube.wait_phase(ns_prod, "shop", "Waiting")
        assert r["status"]["currentRevision"] != rev
        assert kube.deployment_image(ns_prod, "shop") == "registry.example/shop:1"
        approve(ns_prod, "shop", r["status"]["currentRevision"])
        kube.wait_phase(ns_prod, "shop", "Ready")
        assert kube.deployment_image(ns_prod, "shop") == "registry.example/shop:2"


def test_freeze_waits_until_the_window_ends_and_emergency_proceeds_and_rolls_back():
    u = kube.random_suffix()
    spec = {"policies": {"allowEmergency": True}}
    # The admin (group system:masters) may break glass; admission records who did.
    with approval_policies("templates/release-policy.yaml",
                           "releasePolicy.breakGlassGroups={system:masters}"), \
            setup((f"frz-{u}", lambda ns: {"namespaces": [ns[0]], **spec})) as ((ns,), op):
        for name in ("calm", "hotfix"):
            kube.apply(kube.release(name, f"registry.example/{name}:1"), ns)
            kube.wait_phase(ns, name, "Ready")
        now = datetime.datetime.now(datetime.timezone.utc)
        # Whole seconds: the window is written without fractions (rfc3339 above), so the
        # change may proceed up to a second before a fractional `until`.
        until = (now + datetime.timedelta(seconds=25)).replace(microsecond=0)
        kube.kubectl("patch", "environment", f"frz-{u}", "--type=merge", "-p", json.dumps(
            {"spec": {"policies": {"freezeWindows": [
                {"name": "incident-review", "from": rfc3339(now - datetime.timedelta(minutes=1)),
                 "until": rfc3339(until)}]}}}))

        kube.set_image(ns, "calm", "registry.example/calm:2")
        r = kube.wait_phase(ns, "calm", "Waiting")
        assert kube.condition(r, "Reconciling")["reason"] == "FrozenUntil"
        assert "frozen until" in r["status"]["message"]
        assert kube.deployment_image(ns, "calm") == "registry.example/calm:1"

        # An emergency skips the freeze but never health checks: a broken hotfix rolls
        # out and is rolled back by itself.
        declare_emergency(ns, "hotfix", "INC-4711 payment outage")
        kube.set_image(ns, "hotfix", "registry.example/hotfix:crashloop")
        r = kube.wait_phase(ns, "hotfix", "RolledBack")
        assert r["status"]["emergency"] is True
        assert r["status"]["emergencyBy"] == "admin"
        assert kube.deployment_image(ns, "hotfix") == "registry.example/hotfix:1"
        kube.wait_until(lambda: kube.events(ns, "EmergencyRelease"), 10,
                        what="EmergencyRelease event")

        # The window ends; the held change proceeds by itself.
        r = kube.wait_phase(ns, "calm", "Ready", timeout=60)
        assert kube.deployment_image(ns, "calm") == "registry.example/calm:2"
        assert datetime.datetime.now(datetime.timezone.utc) >= until


def test_production_waits_for_the_staging_soak():
    u = kube.random_suffix()
    staging = (f"stg-{u}", lambda ns: {"namespaces": [ns[0]]})
    prod = (f"prd-{u}", lambda ns: {"namespaces": [ns[1]], "policies": {
        "upstream": {"environment": f"stg-{u}", "soakSeconds": 8}}})
    with setup(staging, prod, namespaces=2) as ((ns_stg, ns_prd), op):
        kube.apply(kube.release("api", "registry.example/api:7"), ns_prd)
        r = kube.wait_phase(ns_prd, "api", "Waiting")
        assert kube.condition(r, "Reconciling")["reason"] == "AwaitingUpstream"
        assert f"stg-{u}" in r["status"]["message"]
        kube.apply(kube.release("api", "registry.example/api:7"), ns_stg)
        ready = kube.wait_phase(ns_stg, "api", "Ready")
        ready_at = kube.condition(ready, "Ready")["lastTransitionTime"]
        r = kube.wait_phase(ns_prd, "api", "Ready", timeout=90)
        started = datetime.datetime.fromisoformat(
            kube.condition(r, "Ready")["lastTransitionTime"].replace("Z", "+00:00"))
        soaked = datetime.datetime.fromisoformat(ready_at.replace("Z", "+00:00")) + \
            datetime.timedelta(seconds=8)
        assert started >= soaked - datetime.timedelta(seconds=1), (started, soaked)


def test_image_pinning_warning_and_require_image_digest():
    u = kube.random_suffix()
    digest = "sha256:" + "0123456789abcdef" * 4
    pinned = f"registry.example/img@{digest}"
    dev = (f"dev-{u}", lambda ns: {"namespaces": [ns[0]]})
    prod = (f"prod-{u}", lambda ns: {"namespaces": [ns[1]],
                                      "policies": {"requireImageDigest": True,
                                                   "allowEmergency": True}})
    with setup(dev, prod, namespaces=2) as ((ns_dev, ns_prod), op):
        # Without the policy a :latest image runs, with a warning condition and Event.
        kube.apply(kube.release("img", "registry.example/img:latest"), ns_dev)
        r = kube.wait_phase(ns_dev, "img", "Ready")
        c = kube.condition(r, "ImagesPinned")
        assert c["status"] == "False" and c["reason"] == "MutableTag"
        assert "registry.example/img:latest" in c["message"]
        kube.wait_until(lambda: kube.events(ns_dev, "MutableImageTag"), 10,
                        what="a MutableImageTag event")
        kube.set_image(ns_dev, "img", "registry.example/img:1")
        r = kube.wait_phase(ns_dev, "img", "Ready")
        assert kube.condition(r, "ImagesPinned") == {}

        # With it, a tag is held (even as an emergency) and nothing runs...
        body = kube.release("img", "registry.example/img:1")
        body["metadata"]["annotations"] = {"capstan.dev/emergency": "INC-1"}
        kube.apply(body, ns_prod)
        r = kube.wait_phase(ns_prod, "img", "Waiting")
        assert kube.condition(r, "Reconciling")["reason"] == "ImageDigestRequired"
        assert kube.condition(r, "Stalled")["status"] == "False"
        assert "not pinned: registry.example/img:1" in r["status"]["message"]
        assert not kube.exists("deployment", "img", ns_prod)
        # ...a digest rolls out...
        kube.set_image(ns_prod, "img", pinned)
        kube.wait_phase(ns_prod, "img", "Ready")
        assert kube.deployment_image(ns_prod, "img") == pinned
        # ...and a later tag is held while the pinned revision keeps running.
        kube.set_image(ns_prod, "img", "registry.example/img:2")
        r = kube.wait_phase(ns_prod, "img", "Waiting")
        assert "registry.example/img:2" in r["status"]["message"]
        assert kube.deployment_image(ns_prod, "img") == pinned
