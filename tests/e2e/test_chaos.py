"""Issue #20: randomised kill -9 of the operator, on the real control plane.

Rounds of one change of each kind (a rolling update, a BlueGreen promotion, a manual
rotation), each round cut by several kill -9s at random moments (seeded; the seed is
printed and CAPSTAN_CHAOS_SEED replays it). After every round everything must
converge, and at the end: exactly one switch per promotion and never a moment without
a ready endpoint, no two ControllerRevisions of one template, one rotation per trigger
with every generated value either in use or never handed out, the consumer restarted
for the last version.

CAPSTAN_CHAOS_KILLS sets the number of kills (50 by default).
"""
import collections
import hashlib
import os
import random
import threading

import pytest

import kube
from test_bluegreen import TrafficWatch, bluegreen
from test_secret_rotation import SecretValues, data, env_consumer, rotation, stamp, wait_status

KILLS = int(os.environ.get("CAPSTAN_CHAOS_KILLS", "50"))


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds("secretrotations.capstan.dev")


def images_of_revisions(ns, release):
    out = []
    for c in kube.get("controllerrevisions", namespace=ns)["items"]:
        if c["metadata"]["name"].startswith(f"{release}-"):
            out.append(c["data"]["template"]["spec"]["containers"][0]["image"])
    return out


def test_kill9_at_random_moments_across_rolling_bluegreen_and_rotation():
    seed = int(os.environ.get("CAPSTAN_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"[chaos] seed={seed} kills={KILLS} (replay: CAPSTAN_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    pause = threading.Event()  # never set: its wait() is the random delay before a kill
    with kube.Namespace("chaos") as ns:
        args = (f"--namespace={ns}",)
        ops = [kube.Operator(*args, log_name="capstan-chaos").start()]
        traffic = TrafficWatch(ns, "bg")
        values = SecretValues(ns, "chaos-keys")
        try:
            kube.apply([kube.release("roll", "registry.example/roll:0", replicas=3),
                        bluegreen("bg", "registry.example/bg:0", autoPromote=True,
                                  scaleDownDelaySeconds=1),
                        env_consumer("app", "chaos-keys", replicas=2)], ns)
            kube.apply(rotation("keys", "chaos-keys", "720h"), ns)
            kube.wait_phase(ns, "roll", "Ready")
            kube.wait_phase(ns, "bg", "Ready")
            wait_status(ns, "keys", phase="Ready", currentVersion="1")
            colour = kube.get_release(ns, "bg")["status"]["activeColor"]
            kills, rounds = 0, 0
            while kills < KILLS:
                rounds += 1
                kube.set_image(ns, "roll", f"registry.example/roll:{rounds}")
                kube.set_image(ns, "bg", f"registry.example/bg:{rounds}")
                kube.kubectl("-n", ns, "annotate", "--overwrite", "secretrotation", "keys",
                             f"capstan.dev/rotate=round-{rounds}")
                for _ in range(min(rng.randint(3, 6), KILLS - kills)):
                    pause.wait(rng.uniform(0.05, 1.5))
                    ops[-1].kill9()
                    kills += 1
                    ops.append(kube.Operator(*args, log_name="capstan-chaos").start())
                # Converged after this round's kills.
                want_colour = "green" if colour == "blue" else "blue"
                kube.wait_until(lambda: kube.deployment_image(ns, "roll") ==
                                f"registry.example/roll:{rounds}", 90, what="roll updated")
                kube.wait_phase(ns, "roll", "Ready")
                kube.wait_until(lambda: kube.get_release(ns, "bg")["status"].get(
                    "activeColor") == want_colour, 90, what=f"bg on {want_colour}")
                kube.wait_until(lambda: kube.get("deployment", f"bg-{colour}", ns)["spec"].get(
                    "replicas") == 0, 90, what=f"bg-{colour} scaled down")
                kube.wait_phase(ns, "bg", "Ready")
                colour = want_colour
                wait_status(ns, "keys", timeout=90, phase="Ready",
                            currentVersion=str(rounds + 1))
            print(f"[chaos] {kills} kills in {rounds} rounds, all converged")

            # One switch per promotion, never zero ready endpoints (checked in stop()).
            assert traffic.switches() == rounds, f"selector colours seen: {traffic.colors}"
            # No ControllerRevision twice for one template.
            for release in ("roll", "bg"):
                seen = collections.Counter(images_of_revisions(ns, release))
                assert seen and max(seen.values()) == 1, (release, seen)
                history = [h["revision"] for h in
                           kube.get_release(ns, release)["status"].get("history", [])]
                assert len(history) == len(set(history)), (release, history)
            # The Secret: the last value is in use, every value ever pending became the
            # current one (none generated and then lost), the consumer runs the last one.
            final = data(ns, "chaos-keys")
            values.record_now(kube.get("secret", "chaos-keys", ns))
            currents = [d["jwt-key"] for _, d in values.states if "jwt-key" in d]
            pendings = {d[".capstan-pending.jwt-key"] for _, d in values.states
                        if ".capstan-pending.jwt-key" in d}
            assert pendings <= set(currents), "a pending value never became current"
            assert len(set(currents)) == rounds + 1, "one value per rotation"
            assert currents[-1] == final["jwt-key"]
            uid = kube.get("secretrotation", "keys", ns)["metadata"]["uid"]
            assert stamp(ns, "app", "chaos-keys") == \
                hashlib.sha256(f"{uid}/{rounds + 1}".encode()).hexdigest()[:16]
            traffic.stop()
        finally:
            traffic.slice_watch.stop()
            traffic.service_watch.stop()
            values.stop()
            for op in ops:
                op.stop()
