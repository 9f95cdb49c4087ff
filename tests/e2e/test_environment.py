"""Environment end to end, without the Release integration: the CRD schema rejects bad
Environments at `kubectl apply` with clear messages; `capstan run` (watching all
namespaces) keeps Environment status: the Releases in its namespaces (by name and by
label selector) with counts, and what makes an Environment unusable as the Stalled
condition; admission records who approved a revision (ReleaseApproval)."""
import contextlib
import os
import subprocess

import pytest
import yaml

import kube

@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds("environments.capstan.dev", "releaseapprovals.capstan.dev")


def environment(name, **spec):
    return {"apiVersion": "capstan.dev/v1alpha1", "kind": "Environment",
            "metadata": {"name": name}, "spec": spec}


@contextlib.contextmanager
def environments(*objs):
    """Applies cluster-scoped Environments and deletes them on exit."""
    try:
        kube.apply(list(objs))
        yield
    finally:
        for o in objs:
            kube.kubectl("delete", "environment", o["metadata"]["name"], "--ignore-not-found",
                         "--wait=false", check=False)


@contextlib.contextmanager
def operator():
    """`capstan run` over all namespaces: the Environment controller only runs so."""
    op = kube.Operator(log_name="capstan-env").start()
    try:
        yield op
    finally:
        op.stop()
    failed = [line for line in op.logs().splitlines()
              if '"level":"error"' in line and "queue=environment" in line]
    assert not failed, "\n".join(failed[:5])


def env_status(name):
    return kube.get("environment", name).get("status", {})


def rejected(obj):
    p = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj), check=False)
    assert p.returncode != 0, f"accepted: {obj}"
    return p.stderr


PAST_FREEZE = {"name": "past", "from": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"}
BERLIN_EVENINGS = {"name": "weekdays-evening", "timeZone": "Europe/Berlin",
                   "days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "start": "18:00", "end": "08:00"}


@pytest.mark.parametrize("spec,message", [
    ({}, "set namespaces or a non-empty namespaceSelector"),
    ({"namespaceSelector": {}}, "set namespaces or a non-empty namespaceSelector"),
    ({"namespaces": ["a"], "policies": {"freezeWindows": [
        {**BERLIN_EVENINGS, "from": "2026-12-24T00:00:00Z", "until": "2026-12-27T00:00:00Z"}]}},
     "a freeze window sets either days, start and end (recurring) or from and until (one-off)"),
    ({"namespaces": ["a"], "policies": {"freezeWindows": [{**BERLIN_EVENINGS, "end": "18:00"}]}},
     "freeze window is empty: start and end are equal"),
    ({"namespaces": ["a"], "policies": {"freezeWindows": [
        {"name": "xmas", "from": "2026-12-27T00:00:00Z", "until": "2026-12-24T00:00:00Z"}]}},
     "freeze window is empty: until must be after from"),
    ({"namespaces": ["a"], "policies": {"freezeWindows": [{**BERLIN_EVENINGS, "start": "25:00"}]}},
     "spec.policies.freezeWindows[0].start"),
    ({"namespaces": ["a"], "policies": {"freezeWindows": [{**BERLIN_EVENINGS,
                                                            "days": ["Monday"]}]}},
     'Unsupported value: "Monday"'),
    ({"namespaces": ["a"], "policies": {"allowedStrategies": ["Canary"]}},
     'Unsupported value: "Canary"'),
    ({"namespaces": ["a"], "defaults": {"labels": {"capstan.dev/tier": "x"}}},
     "labels under capstan.dev/ are reserved for Capstan"),
    ({"namespaces": ["a"], "defaults": {"envFrom": [{"configMapRef": {"name": "a"},
                                                     "secretRef": {"name": "b"}}]}},
     "envFrom entries set exactly one of configMapRef and secretRef"),
    ({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
     "operators In and NotIn need values"),
    ({"namespaces": ["a", "a"]}, "Duplicate value"),
])
def test_schema_rejects_bad_environments(spec, message):
    err = rejected(environment(f"bad-{kube.random_suffix()}", **spec))
    assert message in err, err


def test_valid_example_environments_are_accepted_by_the_schema():
    out = kube.kubectl("apply", "--dry-run=server", "-f",
                       os.path.join(kube.SOURCE_DIR, "examples", "environments.yaml"))
    assert out.count("created (server dry run)") + out.count("configured (server dry run)") == 3


def test_status_lists_releases_in_its_namespaces_with_counts():
    name, label = f"staging-{kube.random_suffix()}", f"e2e-env-{kube.random_suffix()}"
    with kube.Namespace("envn") as by_name, kube.Namespace("envl") as by_label, \
            kube.Namespace("envx") as outside, operator():
        kube.kubectl("label", "namespace", by_label, f"{label}=yes")
        with environments(environment(name, namespaces=[by_name],
                                      namespaceSelector={"matchLabels": {label: "yes"}},
                                      defaults={"labels": {"tier": "staging"}},
                                      # Over long ago: Releases here roll out (a
                                      # window open now would hold them in Waiting).
                                      policies={"freezeWindows": [PAST_FREEZE]})):
            kube.apply(kube.release("web", "registry.example/web:1", replicas=1), by_name)
            kube.apply(kube.release("api", "registry.example/api:1", replicas=1), by_label)
            kube.apply(kube.release("stray", "registry.example/stray:1", replicas=1), outside)

            def counted():
                st = env_status(name)
                return st if st.get("releaseCount") == 2 and st.get("readyCount") == 2 else None
            st = kube.wait_until(counted, 90, what=f"environment {name} counting 2 ready Releases")
            assert st["phases"] == {"Ready": 2}
            assert sorted(st["namespaces"]) == sorted([by_name, by_label])
            rows = {(r["namespace"], r["name"]): r for r in st["releases"]}
            assert set(rows) == {(by_name, "web"), (by_label, "api")}, "not the stray one"
            web = kube.get("release", "web", by_name)
            assert rows[(by_name, "web")]["phase"] == "Ready"
            assert rows[(by_name, "web")]["revision"] == web["status"]["currentRevision"]
            assert rows[(by_name, "web")]["sourceRevision"]
            assert rows[(by_name, "web")]["readySince"].endswith("Z")
            ready = kube.condition(kube.get("environment", name), "Ready")
            assert ready["status"] == "True" and ready["reason"] == "Valid"
            assert ready["message"] == "2 Releases in 2 namespaces"
            # Printer columns.
            out = kube.kubectl("get", "env", name)
            assert "RELEASES" in out and "READY" in out and "Valid" in out

            # The namespace loses its label: its Release leaves the Environment.
            kube.kubectl("label", "namespace", by_label, f"{label}-")
            kube.wait_until(lambda: env_status(name).get("releaseCount") == 1, 30,
                            what="the unlabelled namespace leaving the Environment")
            # A Release deleted: the count follows.
            kube.kubectl("-n", by_name, "delete", "release", "web")
            kube.wait_until(lambda: env_status(name).get("releaseCount") == 0, 30,
                            what="the deleted Release leaving the status")


def test_unusable_environments_are_stalled_with_every_problem():
    a, b, shared = (f"prod-{kube.random_suffix()}", f"qa-{kube.random_suffix()}",
                    f"shared-{kube.random_suffix()}")
    with operator(), environments(
            environment(a, namespaces=[shared], policies={
                "upstream": {"environment": b},
                "freezeWindows": [{**BERLIN_EVENINGS, "timeZone": "Mars/Olympus"}]}),
            environment(b, namespaces=[shared], policies={"upstream": {"environment": a}})):
        def stalled(n):
            c = kube.condition(kube.get("environment", n), "Stalled")
            return c if c.get("status") == "True" else None
        msg = kube.wait_until(lambda: stalled(a), 30, what=f"{a} Stalled")["message"]
        assert '"Mars/Olympus" is not a known IANA time zone' in msg, msg
        assert f'namespace "{shared}" is claimed by more than one Environment' in msg, msg
        assert f"cycle ({a} -> {b} -> {a})" in msg, msg
        other = kube.wait_until(lambda: stalled(b), 30, what=f"{b} Stalled")["message"]
        assert f"cycle ({b} -> {a} -> {b})" in other, other
        assert kube.condition(kube.get("environment", a), "Ready")["status"] == "False"
        out = kube.kubectl("get", "env", a)
        assert "Invalid" in out, out


def test_approval_records_the_requesting_user_and_is_immutable():
    chart_release = f"capstan-e2e-{kube.random_suffix()}"
    policies = subprocess.run(
        ["helm", "template", chart_release, kube.CHART, "--show-only",
         "templates/approval-policy.yaml"], capture_output=True, text=True, check=True).stdout
    kube.kubectl("apply", "-f", "-", input=policies)
    try:
        with kube.Namespace("apr") as ns:
            def approval(name, revision, approved_by=None):
                spec = {"release": "shop", "revision": revision}
                if approved_by:
                    spec["approvedBy"] = approved_by
                return yaml.safe_dump({"apiVersion": "capstan.dev/v1alpha1",
                                       "kind": "ReleaseApproval",
                                       "metadata": {"name": name, "namespace": ns},
                                       "spec": spec})
            as_alice = ["--as=alice", "--as-group=system:masters"]

            # Policies take a moment to be picked up by admission: retry the first create.
            def created():
                p = kube.kubectl("create", *as_alice, "-f", "-",
                                 input=approval("first", "5f2c0a1b2c", "mallory"), check=False)
                if p.returncode != 0:
                    return None
                got = kube.get("releaseapproval", "first", ns)["spec"]
                if got.get("approvedBy") != "alice":
                    kube.kubectl("-n", ns, "delete", "releaseapproval", "first")
                    return None
                return got
            got = kube.wait_until(created, 30, interval=1,
                                  what="admission stamping spec.approvedBy")
            assert got["approvedBy"] == "alice", "the typed name is replaced by the real user"
            out = kube.kubectl("-n", ns, "get", "rap", "first")
            assert "alice" in out and "5f2c0a1b2c" in out

            # The spec cannot be re-pointed at another revision.
            p = kube.kubectl("apply", "-f", "-", input=approval("first", "0000000000"),
                             check=False)
            assert p.returncode != 0
            assert "a ReleaseApproval cannot be changed" in p.stderr, p.stderr
    finally:
        kube.kubectl("delete", "-f", "-", "--ignore-not-found", input=policies, check=False)
