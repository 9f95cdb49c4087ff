"""Two `capstan run` processes race for one Lease on the real API server: exactly
one leads at any time, a graceful stop hands over at once, and kill -9 of the
leader hands over within the lease duration (15 s) plus a retry period."""
import time
import uuid

import pytest

import kube


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds()


def leading(op):
    _, text = op.get("/metrics")
    for line in text.splitlines():
        if line.startswith("capstan_leader{"):
            return float(line.rsplit(" ", 1)[1]) == 1.0
    return False


def test_two_replicas_one_leader_and_kill9_handover():
    with kube.Namespace("lease") as ns:
        lease = f"race-{uuid.uuid4().hex[:6]}"
        # A later --leader_election_id overrides the Operator helper's default.
        args = [f"--namespace={ns}", f"--leader_election_namespace={ns}",
                f"--leader_election_id={lease}"]
        a = kube.Operator(*args).start()
        b = kube.Operator(*args).start()
        try:
            kube.wait_until(lambda: leading(a) or leading(b), 30, what="a leader")
            # Never two leaders, sampled back to back (each round reads both metrics and
            # the Lease, which paces it) until the leader has renewed the Lease 3 times.
            renewals = set()
            deadline = time.monotonic() + 60
            while len(renewals) < 4:
                assert time.monotonic() < deadline, f"the Lease renewed only {renewals}"
                assert not (leading(a) and leading(b)), "two leaders at once"
                renewals.add(kube.get("lease", lease, ns)["spec"].get("renewTime"))
            leader, standby = (a, b) if leading(a) else (b, a)
            holder = kube.get("lease", lease, ns)["spec"]["holderIdentity"]
            assert holder
            # kill -9: no release of the Lease; the standby waits out the lease duration.
            killed_at = time.monotonic()
            leader.kill9()
            kube.wait_until(lambda: leading(standby), 30, what="the standby to take over")
            took = time.monotonic() - killed_at
            assert took < 15 + 2 * 2 + 3, f"handover took {took:.1f}s"
            assert kube.get("lease", lease, ns)["spec"]["holderIdentity"] != holder
            # Graceful stop releases the Lease: a new candidate takes over at once.
            c = kube.Operator(*args).start()
            try:
                stopped_at = time.monotonic()
                standby.stop()
                kube.wait_until(lambda: leading(c), 15, what="takeover after a graceful stop")
                assert time.monotonic() - stopped_at < 10
            finally:
                c.stop()
        finally:
            a.stop()
            b.stop()
