"""Issue #20: the API server, and etcd under it, restarted in the middle of a rollout.

The operator keeps running through the restart (its watches end, its requests fail
for a while, its lease renewals too); afterwards the rolling update it was in the
middle of converges with one ControllerRevision per template, and a BlueGreen
Release previewing a new revision during the restart is promoted with exactly one
switch. A leader that cannot renew its lease for the renew deadline (10 s) exits, as
kube-controller-manager does, and a restart here can take longer: then it is started
again, as the kubelet would restart its container, and must pick up where it was.
"""
import datetime
import os
import subprocess

import pytest

import kube
from test_bluegreen import bluegreen, selector_color

CLUSTER_SH = os.path.join(kube.SOURCE_DIR, "tests", "cluster", "cluster.sh")


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds()


def restart(server):
    cluster_dir = os.environ.get("CAPSTAN_CLUSTER_DIR", "")
    if not os.path.exists(os.path.join(cluster_dir, "cmds", server)):
        pytest.skip("the cluster was not started by this fixture (CAPSTAN_E2E_KUBECONFIG)")
    p = subprocess.run([CLUSTER_SH, "restart", cluster_dir, server], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    print(p.stderr.strip().splitlines()[-1])


def renewed_since(op, since):
    """True when the operator's Lease was renewed after `since` (a UTC datetime)."""
    lease_id = next(a.split("=", 1)[1] for a in op.args if a.startswith("--leader_election_id="))
    renew = kube.get("lease", lease_id, "default").get("spec", {}).get("renewTime", "")
    if not renew:
        return False
    when = datetime.datetime.fromisoformat(renew.replace("Z", "+00:00"))
    return when > since


def revisions_of(ns, release):
    return sorted(c["revision"] for c in kube.get("controllerrevisions", namespace=ns)["items"]
                  if c["metadata"]["name"].startswith(f"{release}-"))


@pytest.mark.parametrize("server", ["kube-apiserver", "etcd"])
def test_a_restart_mid_rollout_converges_without_duplicates(server):
    with kube.Namespace("restart") as ns:
        op = kube.Operator(f"--namespace={ns}", log_name=f"capstan-restart-{server}").start()
        try:
            kube.apply([kube.release("roll", "registry.example/roll:1", replicas=4),
                        bluegreen("bg", "registry.example/bg:1", autoPromote=False,
                                  scaleDownDelaySeconds=1)], ns)
            kube.wait_phase(ns, "roll", "Ready")
            kube.wait_phase(ns, "bg", "Ready")
            assert selector_color(ns, "bg") == "blue"
            before = kube.get_release(ns, "roll")["status"]["currentRevision"]
            kube.set_image(ns, "roll", "registry.example/roll:2")
            kube.set_image(ns, "bg", "registry.example/bg:2")
            kube.wait_until(lambda: kube.get_release(ns, "roll")["status"].get(
                "currentRevision") != before, 30, what="roll's rollout started")
            preview = kube.wait_phase(ns, "bg", "Previewing")["status"]["currentRevision"]

            restart(server)
            # Its term either survived the restart (a renewal after it) or ends within the
            # renew deadline (the process exits): wait for one of the two, or a term that
            # is about to end would be taken for one that survived.
            since = datetime.datetime.now(datetime.timezone.utc)
            kube.wait_until(lambda: op.proc.poll() is not None or renewed_since(op, since), 30,
                            what="the lease renewed after the restart, or the operator exited")
            if op.proc.poll() is not None:
                assert op.proc.returncode == 1 and "lost the leader lease" in op.logs()
                print(f"[restarts] the operator exited (lease not renewed within 10 s) and "
                      f"is started again")
                op = kube.Operator(f"--namespace={ns}",
                                   log_name=f"capstan-restart-{server}").start()

            r = kube.wait_phase(ns, "roll", "Ready")
            assert kube.deployment_image(ns, "roll") == "registry.example/roll:2"
            assert revisions_of(ns, "roll") == [1, 2]
            assert r["status"]["stableRevision"] == r["status"]["currentRevision"]
            assert selector_color(ns, "bg") == "blue", "no promotion was asked for"
            kube.kubectl("-n", ns, "annotate", "release", "bg", f"capstan.dev/promote={preview}")
            bg = kube.wait_phase(ns, "bg", "Ready")
            assert bg["status"]["activeColor"] == "green"
            assert selector_color(ns, "bg") == "green"
            assert revisions_of(ns, "bg") == [1, 2]
        finally:
            op.stop()
