"""Issue #20: the operator itself behind the fault proxy (tests/tools/faultproxy.py),
on the real control plane.

Everything the operator sends goes through the proxy, which drops every watch two
seconds after it starts, answers 429 (with Retry-After), 500 and 409, answers slowly,
and cuts the response of a write that did land (the operator sees an error for a write
the API server made: the ambiguous case). Through all of it a rolling update, a
BlueGreen promotion and a rotation must converge: exactly one switch, no orphan object,
no duplicate revision, the rotated value in use, and a bounded number of requests (no
write storm).

Then the leader's connection is black-holed (every request hangs) while a second
replica waits: the leader gives up its lease and exits before the lease could pass,
the other takes over and finishes a rollout, and only one of them writes it.
"""
import time

import pytest

import kube
from test_bluegreen import TrafficWatch, bluegreen
from test_secret_rotation import data, env_consumer, rotation, stamp, wait_status

WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds("secretrotations.capstan.dev")


def always_faulty():
    """Faults for the whole run, first match wins."""
    return [
        # Every watch ends abruptly 2 s in (no clean end of the chunked body).
        {"path": "watch=", "cut_after_seconds": 2},
        # The first reads of Capstan's own resources are throttled, then fail.
        {"method": "GET", "path": "/apis/capstan.dev/", "status": 429, "retry_after": 1,
         "count": 3},
        {"method": "GET", "status": 500, "count": 4},
        # A slow API server for the next 40 reads (writes are left to the rules each
        # step adds: the first matching rule wins, so a rule for every request here
        # would shadow them).
        {"method": "GET", "latency": 0.3, "count": 40},
    ]


def writes_of(proxy, since=0.0, leases=False):
    """The (method, target, status) of every write the proxy saw after `since`."""
    out = []
    for r in proxy.stats()["requests"]:
        if r["method"] in WRITES and r["time"] >= since and (leases or "/leases/" not in
                                                             r["target"]):
            out.append((r["method"], r["target"], r["status"]))
    return out


def unused_rules(proxy, ids):
    """The rule ids among `ids` that no request matched (each fault must have happened,
    or the test proves nothing)."""
    used = {r["rule"] for r in proxy.stats()["requests"]}
    return [i for i in ids if i not in used]


def owned_names(ns, kind):
    return sorted(o["metadata"]["name"] for o in kube.get(kind, namespace=ns)["items"])


def test_rolling_bluegreen_and_rotation_converge_through_faults():
    with kube.Namespace("faults") as ns, kube.FaultProxy(*always_faulty()) as proxy:
        op = kube.Operator(f"--namespace={ns}", f"--kubeconfig={proxy.kubeconfig}",
                           "--resync_seconds=1", log_name="capstan-faults").start()
        traffic = None
        try:
            # A rolling update whose Deployment writes are refused twice with 409.
            kube.apply(kube.release("roll", "registry.example/roll:1"), ns)
            first = kube.wait_phase(ns, "roll", "Ready")["status"]["currentRevision"]
            rules = list(range(1, len(always_faulty()) + 1))
            rules += proxy.add({"method": "PATCH", "path": "/deployments/roll", "status": 409,
                                "count": 2})["ids"]
            kube.set_image(ns, "roll", "registry.example/roll:2")
            kube.wait_until(lambda: kube.get_release(ns, "roll")["status"].get(
                "currentRevision") not in (None, first), 60, what="roll's new revision")
            roll = kube.wait_phase(ns, "roll", "Ready")
            assert kube.deployment_image(ns, "roll") == "registry.example/roll:2"

            # A BlueGreen promotion whose switch lands but whose answer is cut: the
            # operator cannot know it landed, and must still switch exactly once.
            traffic = TrafficWatch(ns, "bg")
            kube.apply(bluegreen("bg", "registry.example/bg:1", autoPromote=True,
                                 scaleDownDelaySeconds=2), ns)
            kube.wait_until(lambda: kube.get_release(ns, "bg").get("status", {}).get(
                "activeColor") == "blue" and traffic.ready_endpoints() == 2, 90,
                what="bg serving on blue")
            kube.wait_phase(ns, "bg", "Ready")
            rules += proxy.add({"method": "PATCH", "path": r"/services/bg(\?|$)",
                                "cut_after_bytes": 0, "count": 1})["ids"]
            kube.set_image(ns, "bg", "registry.example/bg:2")
            kube.wait_until(lambda: kube.get_release(ns, "bg")["status"].get(
                "activeColor") == "green", 90, what="bg switched to green")
            bg = kube.wait_phase(ns, "bg", "Ready")
            kube.wait_until(lambda: kube.get("deployment", "bg-blue", ns)["spec"].get(
                "replicas") == 0, 60, what="blue scaled down")
            assert traffic.switches() == 1, f"selector colours seen: {traffic.colors}"

            # A rotation whose first Secret step write lands with its answer cut, and
            # whose consumer restart is refused once with a 500.
            kube.apply(env_consumer("app", "app-keys"), ns)
            kube.apply(rotation("app", "app-keys", "720h"), ns)
            # The Deployment's watch is cut every 2 s, so the operator may learn of the
            # consumer seconds after it was made: rotate once it is listed (a rotation
            # restarts the consumers it knows at the swap).
            wait_status(ns, "app", timeout=90, phase="Ready", currentVersion="1",
                        consumers=["app"])
            before = data(ns, "app-keys")
            rules += proxy.add({"method": "PATCH", "path": "/secrets/app-keys",
                                "cut_after_bytes": 0, "count": 1},
                               {"method": "PATCH", "path": "/deployments/app", "status": 500,
                                "count": 1})["ids"]
            kube.kubectl("-n", ns, "annotate", "secretrotation", "app", "capstan.dev/rotate=1")
            wait_status(ns, "app", timeout=90, phase="Ready", currentVersion="2")
            after = data(ns, "app-keys")
            assert after["jwt-key"] != before["jwt-key"]
            assert stamp(ns, "app", "app-keys"), "the consumer was restarted"
            kube.kubectl("-n", ns, "rollout", "status", "deployment/app", "--timeout=60s")

            assert unused_rules(proxy, rules) == [], proxy.stats()["requests"]
            # Nothing orphaned, nothing duplicated.
            assert owned_names(ns, "deployments") == ["app", "bg-blue", "bg-green", "roll"]
            revisions = [o["metadata"]["name"] for o in
                         kube.get("controllerrevisions", namespace=ns)["items"]]
            assert len([n for n in revisions if n.startswith("roll-")]) == 2, revisions
            assert len([n for n in revisions if n.startswith("bg-")]) == 2, revisions
            for r in (roll, bg):
                history = [h["revision"] for h in r["status"].get("history", [])]
                assert len(history) == len(set(history)), history

            # Bounded requests: the writes are the work plus retries, not a storm, and a
            # converged operator writes nothing (lease renewals aside).
            writes = writes_of(proxy)
            print(f"[measure] through the fault proxy: {proxy.stats()['total']} requests, "
                  f"{len(writes)} writes (leases aside)")
            assert len(writes) < 150, writes
            settled = time.time()
            op.looked(reconciles=8)
            assert writes_of(proxy, since=settled) == [], "writes while converged"
            traffic.stop()
            traffic = None
        finally:
            if traffic is not None:
                traffic.slice_watch.stop()
                traffic.service_watch.stop()
            op.stop()


def leading(op):
    _, text = op.get("/metrics")
    return any(line.startswith("capstan_leader{") and line.rsplit(" ", 1)[1] in ("1", "1.0")
               for line in text.splitlines())


def test_a_black_holed_leader_exits_and_the_other_replica_finishes_the_rollout():
    with kube.Namespace("blackhole") as ns, kube.FaultProxy() as pa, kube.FaultProxy() as pb:
        lease = f"bh-{kube.random_suffix()}"
        args = [f"--namespace={ns}", f"--leader_election_namespace={ns}",
                f"--leader_election_id={lease}"]
        a = kube.Operator(*args, f"--kubeconfig={pa.kubeconfig}", log_name="capstan-bh-a")
        b = kube.Operator(*args, f"--kubeconfig={pb.kubeconfig}", log_name="capstan-bh-b")
        a.start()
        kube.wait_until(lambda: leading(a), 30, what="a leads")
        b.start()
        try:
            kube.apply(kube.release("web", "registry.example/web:1"), ns)
            kube.wait_phase(ns, "web", "Ready")
            assert not leading(b)
            # Every request of the leader now hangs (its open watches too).
            holed_at = time.time()
            pa.add({"latency": 3600})
            pa.cut()
            kube.wait_until(lambda: a.proc.poll() is not None, 30,
                            what="the black-holed leader to exit")
            exited_at = time.time()
            assert a.proc.returncode != 0
            assert "lost the leader lease" in a.logs()
            kube.wait_until(lambda: leading(b), 40, what="b to take over")
            took_over_at = time.time()
            # Exited before the lease (15 s) could pass to b.
            assert exited_at < took_over_at, (exited_at - holed_at, took_over_at - holed_at)
            kube.set_image(ns, "web", "registry.example/web:2")
            kube.wait_phase(ns, "web", "Ready")
            assert kube.deployment_image(ns, "web") == "registry.example/web:2"
            # Only b wrote the rollout: nothing of a's reached the API server after the
            # black hole (its held requests died with it).
            assert [w for w in writes_of(pa, since=holed_at, leases=True)
                    if w[2] not in (0,)] == []
            assert any("/deployments/web" in w[1] for w in writes_of(pb, since=took_over_at))
            print(f"[measure] black-holed leader exited after {exited_at - holed_at:.1f} s; "
                  f"the other replica led after {took_over_at - holed_at:.1f} s")
        finally:
            a.stop()
            b.stop()
