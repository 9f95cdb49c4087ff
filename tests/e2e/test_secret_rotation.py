"""SecretRotation end to end on the real control plane: a user applies a
SecretRotation and Deployments with kubectl, `capstan run` (the real binary)
creates and rotates the Secret and restarts the Deployments that read it.

Every test records every value the Secret ever held (a `kubectl get -w` watch
running for the whole test) and, at the end, greps the operator's log, the
namespace's Events, the SecretRotation (status included) and /metrics for
each of them, raw and base64-encoded."""
import base64
import contextlib
import datetime
import hashlib
import json
import subprocess
import threading
import zoneinfo

import pytest

import kube


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds("secretrotations.capstan.dev")


class SecretValues:
    """Watches one Secret (kubectl get -w) and keeps every data value it ever had."""

    def __init__(self, ns, name):
        self.values = set()
        self.states = []  # (rotation-state annotation, data) per observed version
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["kubectl", "-n", ns, "get", "secrets", "-w", "-o", "json",
             f"--field-selector=metadata.name={name}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        decoder = json.JSONDecoder()
        buf = ""
        while True:
            chunk = self.proc.stdout.read(1) if not buf else self.proc.stdout.readline()
            if not chunk:
                return
            buf += chunk
            while True:
                stripped = buf.lstrip()
                if not stripped:
                    buf = ""
                    break
                try:
                    obj, end = decoder.raw_decode(stripped)
                except json.JSONDecodeError:
                    break
                buf = stripped[end:]
                self._record(obj)

    def _record(self, obj):
        items = obj.get("items", [obj]) if obj.get("kind") == "List" else [obj]
        for s in items:
            data = s.get("data") or {}
            state = (s["metadata"].get("annotations") or {}).get(
                "capstan.dev/rotation-state", "")
            with self.lock:
                self.states.append((state, dict(data)))
                for v in data.values():
                    self.values.add(v)

    def record_now(self, secret):
        self._record(secret)

    def seen_states(self):
        with self.lock:
            return list(self.states)

    def all_values(self):
        """Each value as stored (base64) and decoded (what the application reads)."""
        with self.lock:
            out = set()
            for v in self.values:
                out.add(v)
                out.add(base64.b64decode(v).decode("utf-8", "replace"))
            return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


@contextlib.contextmanager
def running(*args):
    with kube.Namespace("srot") as ns:
        # Trace level: the leak checks must hold for the most verbose log too.
        op = kube.Operator(f"--namespace={ns}", "--log_level=trace", *args).start()
        box = {"op": op, "all": [op]}
        try:
            yield ns, box
        finally:
            for o in box["all"]:
                o.stop()


def rotation(name, secret, interval, keys=None, **spec):
    """A SecretRotation; interval None leaves it out (for spec.schedule)."""
    if interval is not None:
        spec = {"interval": interval, **spec}
    return {
        "apiVersion": "capstan.dev/v1alpha1",
        "kind": "SecretRotation",
        "metadata": {"name": name},
        "spec": {
            "secretName": secret,
            "keys": keys or [
                {"name": "jwt-key", "randomBytes": {"length": 32, "encoding": "base64"}},
                {"name": "db-password", "password": {
                    "length": 24, "characterClasses": ["Lower", "Upper", "Digit", "Symbol"],
                    "exclude": "O0Il1"}},
                {"name": "api-key", "randomBytes": {"length": 16, "encoding": "hex"}},
                {"name": "client-id", "uuid": {}},
            ],
            **spec,
        },
    }


def env_consumer(name, secret, replicas=1, image="registry.example/app:1", **spec):
    d = kube.deployment(name, image, replicas)
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "JWT_KEY", "valueFrom": {"secretKeyRef": {"name": secret, "key": "jwt-key"}}}]
    d["spec"].update(spec)
    return d


def volume_consumer(name, secret, replicas=1):
    d = kube.deployment(name, "registry.example/app:1", replicas)
    d["spec"]["template"]["spec"]["volumes"] = [
        {"name": "keys", "projected": {"sources": [{"secret": {"name": secret}}]}}]
    d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "keys", "mountPath": "/keys"}]
    return d


def srot(ns, name):
    return kube.get("secretrotation", name, ns)


def secret(ns, name):
    return kube.get("secret", name, ns)


def data(ns, name):
    return secret(ns, name).get("data", {})


def plain(v):
    return base64.b64decode(v).decode()


def stamp(ns, deploy, secret_name):
    """The Deployment's restart stamp for one Secret (one annotation per Secret)."""
    d = kube.get("deployment", deploy, ns)
    return (d["spec"]["template"]["metadata"].get("annotations") or {}).get(
        f"secret-version.capstan.dev/{secret_name}", "")


def wait_status(ns, name, timeout=60, **want):
    def check():
        st = srot(ns, name).get("status", {})
        return st if all(st.get(k) == v for k, v in want.items()) else None
    return kube.wait_until(check, timeout, what=f"secretrotation {name} status {want}")


def assert_no_value_leaked(ns, name, ops, values):
    """Greps every operator's log (killed ones too), the Events, the
    SecretRotation and the running operator's /metrics for every value."""
    assert values, "the watch saw the Secret's values"
    ops = ops if isinstance(ops, list) else [ops]
    running_ops = [o for o in ops if o.proc and o.proc.poll() is None]
    assert running_ops, "grep /metrics of a running operator"
    haystacks = {
        "operator log": "".join(o.logs() for o in ops),
        "events": kube.kubectl("-n", ns, "get", "events", "-o", "yaml")
                  + kube.kubectl("-n", ns, "get", "events.events.k8s.io", "-o", "yaml"),
        "secretrotation": kube.kubectl("-n", ns, "get", "secretrotation", name, "-o", "yaml"),
        "metrics": "".join(o.get("/metrics")[1] for o in running_ops),
    }
    for where, text in haystacks.items():
        assert text, f"{where} is empty"
        for v in values:
            # Very short decoded fragments could match by chance; every value
            # Capstan generates here is at least 16 characters.
            if len(v) >= 16:
                assert v not in text, f"a Secret value appears in the {where}"


def test_rotation_restarts_env_and_volume_consumers_and_keeps_previous_for_grace():
    with running() as (ns, box):
        watch = SecretValues(ns, "app-keys")
        try:
            kube.apply([env_consumer("env-app", "app-keys", replicas=2),
                        volume_consumer("vol-app", "app-keys")], ns)
            kube.apply(rotation("app", "app-keys", "20s",
                                strategy={"type": "KeepPrevious", "gracePeriod": "6s"}), ns)
            st = wait_status(ns, "app", phase="Ready", currentVersion="1")
            first = data(ns, "app-keys")
            watch.record_now(secret(ns, "app-keys"))
            assert sorted(first) == ["api-key", "client-id", "db-password", "jwt-key"]
            # Values have the declared length and alphabet.
            assert len(base64.b64decode(plain(first["jwt-key"]))) == 32, "32 bytes, base64"
            pw = plain(first["db-password"])
            assert len(pw) == 24 and not set(pw) & set("O0Il1")
            assert any(c.islower() for c in pw) and any(c.isupper() for c in pw)
            assert any(c.isdigit() for c in pw) and any(not c.isalnum() for c in pw)
            assert len(plain(first["api-key"])) == 32
            assert set(plain(first["api-key"])) <= set("0123456789abcdef")
            assert len(plain(first["client-id"])) == 36
            s = secret(ns, "app-keys")
            owner = s["metadata"]["ownerReferences"][0]
            assert owner["kind"] == "SecretRotation" and owner["controller"] is True
            assert s["metadata"]["labels"]["capstan.dev/secret-rotation"] == "app"
            assert sorted(st["consumers"]) == ["env-app", "vol-app"]
            # Printer columns.
            out = kube.kubectl("-n", ns, "get", "srot", "app")
            assert "app-keys" in out and "20s" in out and "Ready" in out
            before = {d: stamp(ns, d, "app-keys") for d in ("env-app", "vol-app")}

            # The scheduled rotation (20 s after creation).
            st = wait_status(ns, "app", timeout=60, phase="Ready", currentVersion="2")
            second = data(ns, "app-keys")
            watch.record_now(secret(ns, "app-keys"))
            for k in ("jwt-key", "db-password", "api-key", "client-id"):
                assert second[k] != first[k]
                assert second[f"{k}_previous"] == first[k], "KeepPrevious keeps the old value"
            assert not [k for k in second if k.startswith(".capstan-")]
            after = {d: stamp(ns, d, "app-keys") for d in ("env-app", "vol-app")}
            for d in after:
                assert after[d] and after[d] != before[d], f"{d} restarted"
                kube.kubectl("-n", ns, "rollout", "status", f"deployment/{d}", "--timeout=60s")
            # The stamp is a hash of the version id, not of any value.
            uid = srot(ns, "app")["metadata"]["uid"]
            assert after["env-app"] == hashlib.sha256(f"{uid}/2".encode()).hexdigest()[:16]
            assert st["nextRotationTime"] > st["lastRotationTime"]

            # The grace period (6 s) ends: the previous values go, the current stay.
            kube.wait_until(lambda: not [k for k in data(ns, "app-keys")
                                         if k.endswith("_previous")], 30,
                            what="previous values cleared after the grace period")
            now = data(ns, "app-keys")
            assert all(now[k] == second[k] for k in ("jwt-key", "db-password"))
            assert kube.events(ns, "Rotated") and kube.events(ns, "PreviousCleared")
            _, metrics = box["op"].get("/metrics")
            assert f'capstan_secret_rotations_total{{name="app",namespace="{ns}",' \
                   f'result="succeeded",target="none"}}' in metrics
            assert f'capstan_secret_rotation_next_seconds{{name="app",namespace="{ns}"}}' \
                in metrics
            # Let one more rotation happen, then look for leaks of every value seen.
            wait_status(ns, "app", timeout=60, phase="Ready", currentVersion="3")
            watch.record_now(secret(ns, "app-keys"))
        finally:
            watch.stop()
        assert_no_value_leaked(ns, "app", box["op"], watch.all_values())


def test_manual_trigger_rotates_once_per_token():
    with running() as (ns, box):
        watch = SecretValues(ns, "api-keys")
        try:
            kube.apply(rotation("api", "api-keys", "2160h"), ns)
            wait_status(ns, "api", phase="Ready", currentVersion="1")
            first = data(ns, "api-keys")
            kube.kubectl("-n", ns, "annotate", "secretrotation", "api", "capstan.dev/rotate=now-1")
            st = wait_status(ns, "api", phase="Ready", currentVersion="2", lastTriggerToken="now-1")
            assert data(ns, "api-keys")["jwt-key"] != first["jwt-key"]
            assert "api-keys_previous" not in data(ns, "api-keys"), "Replace keeps no previous"
            # The same token again does nothing; spec was never edited.
            n = box["op"].reconciles()
            kube.kubectl("-n", ns, "annotate", "secretrotation", "api", "touched=1")
            kube.wait_until(lambda: box["op"].reconciles() > n, 10, what="a reconcile")
            assert srot(ns, "api")["status"]["currentVersion"] == "2"
            assert srot(ns, "api")["metadata"]["generation"] == 1
            assert st["nextRotationTime"] > st["lastRotationTime"]
            watch.record_now(secret(ns, "api-keys"))
        finally:
            watch.stop()
        assert_no_value_leaked(ns, "api", box["op"], watch.all_values())


def test_manual_trigger_waits_for_a_person_and_raises_rotation_due():
    """trigger: Manual ("Manual + Alert"): due after 4 s, it rotates nothing by itself;
    RotationDue (condition, one Warning Event, metric) asks a person, whose token rotates."""
    with running("--resync_seconds=1") as (ns, box):
        watch = SecretValues(ns, "partner-keys")
        try:
            kube.apply(rotation("partner", "partner-keys", "4s", trigger="Manual"), ns)
            st = wait_status(ns, "partner", phase="Ready", currentVersion="1")
            first = data(ns, "partner-keys")
            watch.record_now(secret(ns, "partner-keys"))
            # Due: the same status write that says so shows version 1 still in use.
            obj = kube.wait_until(lambda: (lambda o: o if kube.condition(o, "RotationDue").get(
                "status") == "True" else None)(srot(ns, "partner")), 60, what="RotationDue True")
            st, due = obj["status"], kube.condition(obj, "RotationDue")
            assert due["reason"] == "RotationDue"
            assert f"kubectl -n {ns} annotate secretrotation partner capstan.dev/rotate=" \
                in due["message"]
            assert st["currentVersion"] == "1" and st["phase"] == "Ready"
            metric = f'capstan_secret_rotation_due{{name="partner",namespace="{ns}"}} 1'
            kube.wait_until(lambda: metric in box["op"].get("/metrics")[1], 30,
                            what="capstan_secret_rotation_due 1")
            # Still nothing rotated after the operator has looked again, one Event only.
            box["op"].looked(3)
            assert data(ns, "partner-keys") == first
            ev = kube.events(ns, "RotationDue")
            assert len(ev) == 1 and ev[0]["type"] == "Warning" and not ev[0].get("series"), ev

            kube.kubectl("-n", ns, "annotate", "secretrotation", "partner",
                         "capstan.dev/rotate=ticket-42")
            st = wait_status(ns, "partner", timeout=60, phase="Ready", currentVersion="2",
                             lastTriggerToken="ticket-42")
            assert data(ns, "partner-keys")["jwt-key"] != first["jwt-key"]
            watch.record_now(secret(ns, "partner-keys"))
            history = [(h["version"], h["result"]) for h in st["history"]]
            assert history == [("2", "Succeeded"), ("1", "Succeeded")], st["history"]
            assert kube.kubectl("-n", ns, "get", "srot", "partner", "-o",
                                "jsonpath={.spec.trigger}") == "Manual"
        finally:
            watch.stop()
        assert_no_value_leaked(ns, "partner", box["op"], watch.all_values())


def test_a_freeze_window_holds_a_due_rotation_unless_it_ignores_freezes():
    """A rotation is a change: the namespace Environment's freeze holds its start (Held,
    one RotationHeld Event), a manual token too; ignoreFreeze lets it rotate."""
    with running("--resync_seconds=1") as (ns, box):
        env = {"apiVersion": "capstan.dev/v1alpha1", "kind": "Environment",
               "metadata": {"name": f"frozen-{ns}"},
               "spec": {"namespaces": [ns], "policies": {"freezeWindows": [
                   {"name": "change-freeze", "from": "2020-01-01T00:00:00Z",
                    "until": "2100-01-01T00:00:00Z"}]}}}
        kube.apply(env)
        watch = SecretValues(ns, "frozen-keys")
        try:
            kube.apply(rotation("frozen", "frozen-keys", "3s"), ns)
            wait_status(ns, "frozen", phase="Ready", currentVersion="1")
            first = data(ns, "frozen-keys")
            watch.record_now(secret(ns, "frozen-keys"))
            obj = kube.wait_until(lambda: (lambda o: o if kube.condition(o, "Held").get(
                "status") == "True" else None)(srot(ns, "frozen")), 60, what="Held True")
            held = kube.condition(obj, "Held")
            assert held["reason"] == "FrozenUntil", held
            assert "window change-freeze" in held["message"] and "ignoreFreeze" in held["message"]
            assert obj["status"]["currentVersion"] == "1" and obj["status"]["phase"] == "Ready"
            kube.kubectl("-n", ns, "annotate", "secretrotation", "frozen",
                         "capstan.dev/rotate=leak-1")
            box["op"].looked(3)
            st = srot(ns, "frozen")["status"]
            assert st["currentVersion"] == "1" and "lastTriggerToken" not in st, st
            assert data(ns, "frozen-keys") == first
            ev = kube.events(ns, "RotationHeld")
            assert len(ev) == 1 and not ev[0].get("series"), ev

            kube.kubectl("-n", ns, "patch", "secretrotation", "frozen", "--type=merge", "-p",
                         json.dumps({"spec": {"ignoreFreeze": True}}))
            st = wait_status(ns, "frozen", timeout=60, phase="Ready", currentVersion="2",
                             lastTriggerToken="leak-1")
            assert not kube.condition({"status": st}, "Held"), st["conditions"]
            assert data(ns, "frozen-keys")["jwt-key"] != first["jwt-key"]
            watch.record_now(secret(ns, "frozen-keys"))
        finally:
            watch.stop()
            kube.kubectl("delete", "environment", env["metadata"]["name"], "--ignore-not-found",
                         "--wait=false", check=False)
        assert_no_value_leaked(ns, "frozen", box["op"], watch.all_values())


def test_cron_schedules_fire_on_the_minute_in_their_time_zone():
    """spec.schedule (cron) in spec.timeZone: a daily 03:00 in Asia/Kathmandu (UTC+5:45)
    is due at 21:15 UTC; an every-minute schedule rotates on the minute, and the next one
    is a minute later."""
    with running() as (ns, box):
        kube.apply(rotation("nightly", "nightly-keys", None, schedule="0 3 * * *",
                            timeZone="Asia/Kathmandu"), ns)
        kube.apply(rotation("minutely", "minutely-keys", None, schedule="* * * * *"), ns)
        st = wait_status(ns, "nightly", phase="Ready", currentVersion="1")
        last = datetime.datetime.fromisoformat(st["lastRotationTime"].replace("Z", "+00:00"))
        local = last.astimezone(zoneinfo.ZoneInfo("Asia/Kathmandu"))
        due = local.replace(hour=3, minute=0, second=0, microsecond=0)
        if due <= local:
            due += datetime.timedelta(days=1)
        assert st["nextRotationTime"] == due.astimezone(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"), st
        first = wait_status(ns, "minutely", phase="Ready", currentVersion="1")
        assert first["nextRotationTime"].endswith(":00Z"), first
        st = wait_status(ns, "minutely", timeout=120, phase="Ready", currentVersion="2")
        assert st["lastRotationTime"] >= first["nextRotationTime"], "not before it was due"
        at = datetime.datetime.fromisoformat(first["nextRotationTime"].replace("Z", "+00:00"))
        assert st["nextRotationTime"] == (at + datetime.timedelta(minutes=1)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"), st
        assert srot(ns, "nightly")["status"]["currentVersion"] == "1", "not due yet"


def test_unhealthy_consumer_gets_the_previous_values_restored():
    """The consumer stands for an application that cannot start with the new
    value. KWOK cannot read Secrets, so the test plays that application: as
    soon as the Secret holds the new version it switches the Deployment to a
    `neverready` image (the pods of the new template never become Ready), and
    when the previous version is back it switches back. minReadySeconds keeps
    the new pods from counting as available before the switch lands."""
    with running("--resync_seconds=1") as (ns, box):
        watch = SecretValues(ns, "db-creds")
        try:
            kube.apply(env_consumer("picky", "db-creds", replicas=2, minReadySeconds=4,
                                    strategy={"rollingUpdate": {"maxUnavailable": 0,
                                                                "maxSurge": 1}}), ns)
            kube.apply(rotation("db", "db-creds", "720h",
                                onFailure={"action": "Restore", "healthTimeout": "10s"}), ns)
            wait_status(ns, "db", phase="Ready", currentVersion="1")
            original = data(ns, "db-creds")
            watch.record_now(secret(ns, "db-creds"))
            kube.kubectl("-n", ns, "rollout", "status", "deployment/picky", "--timeout=60s")
            original_stamp = stamp(ns, "picky", "db-creds")

            kube.kubectl("-n", ns, "annotate", "secretrotation", "db", "capstan.dev/rotate=1")
            kube.wait_until(lambda: data(ns, "db-creds")["jwt-key"] != original["jwt-key"], 30,
                            interval=0.1, what="the new values in the Secret")
            image = "/spec/template/spec/containers/0/image"
            kube.kubectl("-n", ns, "patch", "deployment", "picky", "--type=json", "-p",
                         json.dumps([{"op": "replace", "path": image,
                                      "value": "registry.example/app:neverready"}]))
            st = wait_status(ns, "db", timeout=60, phase="Failed")
            assert st["reason"] == "ConsumersUnhealthy"
            assert "Deployment picky" in st["message"]
            assert st["currentVersion"] == "1"
            restored = data(ns, "db-creds")
            assert restored == original, "every key back to its previous value, nothing extra"
            uid = srot(ns, "db")["metadata"]["uid"]
            restored_stamp = hashlib.sha256(f"{uid}/1".encode()).hexdigest()[:16]
            assert original_stamp == "", "never restarted before the first rotation"
            kube.wait_until(lambda: stamp(ns, "picky", "db-creds") == restored_stamp, 30,
                            what="picky restarted with the restored version (id 1)")
            ev = kube.events(ns, "RotationFailed")
            assert ev and ev[0]["type"] == "Warning"
            # The application works again with the old value.
            kube.kubectl("-n", ns, "patch", "deployment", "picky", "--type=json", "-p",
                         json.dumps([{"op": "replace", "path": image,
                                      "value": "registry.example/app:1"}]))
            kube.kubectl("-n", ns, "rollout", "status", "deployment/picky", "--timeout=60s")
            _, metrics = box["op"].get("/metrics")
            assert f'capstan_secret_rotations_total{{name="db",namespace="{ns}",' \
                   f'result="failed",target="none"}} 1' in metrics
            # Not retried by itself before the next interval (the operator has looked again).
            box["op"].looked(2)
            assert srot(ns, "db")["status"]["phase"] == "Failed"
            assert data(ns, "db-creds") == original
        finally:
            watch.stop()
        assert_no_value_leaked(ns, "db", box["op"], watch.all_values())


def test_kill9_mid_rotation_converges_and_loses_no_value():
    with running() as (ns, box):
        watch = SecretValues(ns, "k9-keys")
        try:
            # minReadySeconds stretches the Restarted step to a few seconds.
            kube.apply(env_consumer("k9", "k9-keys", replicas=2, minReadySeconds=3), ns)
            kube.apply(rotation("k9", "k9-keys", "720h",
                                strategy={"type": "KeepPrevious", "gracePeriod": "1h"}), ns)
            wait_status(ns, "k9", phase="Ready", currentVersion="1")
            kube.kubectl("-n", ns, "rollout", "status", "deployment/k9", "--timeout=60s")
            killed_in = []
            for round_, version in ((1, "2"), (2, "3")):
                before = data(ns, "k9-keys")
                watch.record_now(secret(ns, "k9-keys"))
                kube.kubectl("-n", ns, "annotate", "--overwrite", "secretrotation", "k9",
                             f"capstan.dev/rotate=r{round_}")
                def in_flight():
                    ann = secret(ns, "k9-keys")["metadata"].get("annotations") or {}
                    st = ann.get("capstan.dev/rotation-state", "Idle")
                    return st if st != "Idle" else None
                state = kube.wait_until(in_flight, 30, interval=0.05,
                                        what="a rotation in flight")
                box["op"].kill9()
                killed_in.append(state)
                mid = secret(ns, "k9-keys")
                watch.record_now(mid)
                box["op"] = kube.Operator(f"--namespace={ns}").start()
                box["all"].append(box["op"])
                wait_status(ns, "k9", timeout=90, phase="Ready", currentVersion=version)
                after = data(ns, "k9-keys")
                watch.record_now(secret(ns, "k9-keys"))
                # The old value is kept as previous; the value the killed process
                # generated (if it got as far as writing it) is the one in use.
                assert after["jwt-key_previous"] == before["jwt-key"]
                assert after["jwt-key"] != before["jwt-key"]
                mid_data = mid.get("data", {})
                for candidate in (mid_data.get(".capstan-pending.jwt-key"),
                                  mid_data.get("jwt-key") if mid_data.get("jwt-key")
                                  != before["jwt-key"] else None):
                    if candidate:
                        assert after["jwt-key"] == candidate, "the generated value survived"
                assert not [k for k in after if k.startswith(".capstan-")]
                assert stamp(ns, "k9", "k9-keys") == hashlib.sha256(
                    f'{srot(ns, "k9")["metadata"]["uid"]}/{version}'.encode()).hexdigest()[:16]
                kube.kubectl("-n", ns, "rollout", "status", "deployment/k9", "--timeout=60s")
            # Every value the Secret ever showed is either in use, kept as
            # previous, or was a previous value cleared by a later rotation:
            # no generated value was dropped and replaced by another.
            states = watch.seen_states()
            final = data(ns, "k9-keys")
            currents = []
            for _, d in states:
                v = d.get("jwt-key")
                if v and (not currents or currents[-1] != v):
                    currents.append(v)
            assert len(currents) == 3, f"exactly three jwt-key values over two rotations " \
                                       f"(killed in {killed_in})"
            assert currents[-1] == final["jwt-key"]
            assert currents[-2] == final["jwt-key_previous"]
            pendings = {d[".capstan-pending.jwt-key"] for _, d in states
                        if ".capstan-pending.jwt-key" in d}
            assert pendings <= set(currents), "every pending value became current"
        finally:
            watch.stop()
        assert_no_value_leaked(ns, "k9", box["all"], watch.all_values())


@contextlib.contextmanager
def slow_secret_writes(seconds):
    """The fault proxy in front of the API server, holding every Secret PATCH for
    `seconds` before forwarding it: after one rotation step's write lands, the next one
    waits, so a kill -9 lands exactly between two steps."""
    with kube.FaultProxy({"method": "PATCH", "path": "/secrets/", "latency": seconds}) as p:
        yield p.kubeconfig


@pytest.mark.parametrize("kill_after", ["Pending", "Swapped", "Restarted"])
def test_kill9_after_each_step_resumes_from_the_secret(kill_after):
    with kube.Namespace("srotk") as ns, slow_secret_writes(2) as proxy_cfg:
        first = kube.Operator(f"--namespace={ns}", f"--kubeconfig={proxy_cfg}").start()
        op = first
        watch = SecretValues(ns, "step-keys")
        try:
            kube.apply(env_consumer("step", "step-keys", replicas=2, minReadySeconds=2), ns)
            kube.apply(rotation("step", "step-keys", "720h",
                                strategy={"type": "KeepPrevious", "gracePeriod": "1h"}), ns)
            wait_status(ns, "step", phase="Ready", currentVersion="1")
            before = data(ns, "step-keys")
            kube.kubectl("-n", ns, "annotate", "secretrotation", "step", "capstan.dev/rotate=1")

            def state():
                ann = secret(ns, "step-keys")["metadata"].get("annotations") or {}
                return ann.get("capstan.dev/rotation-state", "Idle")
            # The next step's write is held for 2 s: kill inside that window.
            kube.wait_until(lambda: state() == kill_after, 30, interval=0.05,
                            what=f"state {kill_after}")
            op.kill9()
            mid = secret(ns, "step-keys")
            watch.record_now(mid)
            assert mid["metadata"]["annotations"]["capstan.dev/rotation-state"] == kill_after
            mid_data = mid.get("data", {})
            generated = mid_data.get(".capstan-pending.jwt-key") or mid_data["jwt-key"]
            assert generated != before["jwt-key"], "the killed process had written new values"

            op = kube.Operator(f"--namespace={ns}").start()
            wait_status(ns, "step", timeout=60, phase="Ready", currentVersion="2")
            after = data(ns, "step-keys")
            watch.record_now(secret(ns, "step-keys"))
            assert after["jwt-key"] == generated, "the value written before the kill is in use"
            assert after["jwt-key_previous"] == before["jwt-key"]
            assert not [k for k in after if k.startswith(".capstan-")]
            uid = srot(ns, "step")["metadata"]["uid"]
            assert stamp(ns, "step", "step-keys") == \
                hashlib.sha256(f"{uid}/2".encode()).hexdigest()[:16]
            kube.kubectl("-n", ns, "rollout", "status", "deployment/step", "--timeout=60s")
            watch.stop()
            assert_no_value_leaked(ns, "step", [first, op], watch.all_values())
        finally:
            watch.stop()
            first.stop()
            op.stop()


def test_release_consumer_is_restarted_through_its_own_rollout():
    """A Release is a consumer of its own: the stamp goes on its metadata, the Release
    controller rolls it out as a new revision (its Deployment is not stamped directly)."""
    with running() as (ns, box):
        rel = kube.release("web", "registry.example/web:1", replicas=2)
        rel["spec"]["template"]["spec"]["containers"][0]["env"] = [
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "web-keys",
                                                           "key": "jwt-key"}}}]
        kube.apply(rotation("web", "web-keys", "720h",
                            keys=[{"name": "jwt-key", "randomBytes": {"length": 32}}]), ns)
        kube.apply(rel, ns)
        kube.kubectl("-n", ns, "wait", "--for=condition=Ready", "release/web", "--timeout=90s")
        wait_status(ns, "web", phase="Ready", currentVersion="1")
        kube.kubectl("-n", ns, "annotate", "secretrotation", "web", "capstan.dev/rotate=1")
        st = wait_status(ns, "web", phase="Ready", currentVersion="2")
        assert st["consumers"] == ["web"]
        uid = srot(ns, "web")["metadata"]["uid"]
        want = hashlib.sha256(f"{uid}/2".encode()).hexdigest()[:16]
        rel_now = kube.get("release", "web", ns)
        assert rel_now["metadata"]["annotations"]["secret-version.capstan.dev/web-keys"] == want
        assert rel_now["status"]["secretVersions"] == {"secret-version.capstan.dev/web-keys": want}
        assert rel_now["status"]["phase"] == "Ready"
        assert kube.events(ns, "ConsumersRestarted")[0]["note"].startswith("restarting Release web")
        assert stamp(ns, "web", "web-keys") == want, "the revision's pod template carries it"
        # The Release's spec is not edited, and its controller keeps the stamp.
        assert rel_now["metadata"]["generation"] == 1
        kube.kubectl("-n", ns, "wait", "--for=condition=Ready", "release/web", "--timeout=90s")
        n = box["op"].reconciles()
        kube.kubectl("-n", ns, "annotate", "release", "web", "touched=1")
        kube.wait_until(lambda: box["op"].reconciles() > n, 10, what="a reconcile")
        assert stamp(ns, "web", "web-keys") == want


def test_a_deployment_reading_two_rotated_secrets_gets_one_stamp_per_secret():
    with running("--resync_seconds=1") as (ns, box):
        d = env_consumer("both", "jwt-keys")
        d["spec"]["template"]["spec"]["volumes"] = [
            {"name": "db", "secret": {"secretName": "db-keys"}}]
        kube.apply([d,
                    rotation("jwt", "jwt-keys", "720h",
                             keys=[{"name": "jwt-key", "randomBytes": {"length": 32}}]),
                    rotation("db", "db-keys", "720h",
                             keys=[{"name": "password", "password": {"length": 16}}])], ns)
        for name in ("jwt", "db"):
            wait_status(ns, name, phase="Ready", currentVersion="1")
        kube.kubectl("-n", ns, "annotate", "secretrotation", "jwt", "capstan.dev/rotate=1")
        kube.kubectl("-n", ns, "annotate", "secretrotation", "db", "capstan.dev/rotate=1")
        for name, secret_name in (("jwt", "jwt-keys"), ("db", "db-keys")):
            st = wait_status(ns, name, phase="Ready", currentVersion="2")
            assert st["consumers"] == ["both"]
            uid = srot(ns, name)["metadata"]["uid"]
            assert stamp(ns, "both", secret_name) == \
                hashlib.sha256(f"{uid}/2".encode()).hexdigest()[:16]
        # Settled: the two SecretRotations do not keep restarting the Deployment.
        generation = kube.get("deployment", "both", ns)["metadata"]["generation"]
        box["op"].looked(6)  # each SecretRotation reconciled at least twice more
        assert kube.get("deployment", "both", ns)["metadata"]["generation"] == generation


def test_existing_secret_is_not_adopted_unless_asked_and_consented():
    with running() as (ns, box):
        kube.kubectl("-n", ns, "create", "secret", "generic", "handmade",
                     "--from-literal=jwt-key=hand-made-value-0123456789", "--from-literal=other=x")
        kube.apply(rotation("hm", "handmade", "720h",
                            keys=[{"name": "jwt-key", "randomBytes": {"length": 32}}]), ns)
        st = wait_status(ns, "hm", phase="Stalled")
        assert st["reason"] == "Conflict" and "adoptExisting" in st["message"]
        assert plain(data(ns, "handmade")["jwt-key"]) == "hand-made-value-0123456789"
        kube.kubectl("-n", ns, "patch", "secretrotation", "hm", "--type=merge", "-p",
                     json.dumps({"spec": {"adoptExisting": True}}))
        # Asking on the SecretRotation is not enough: the Secret itself must consent
        # (an annotation only someone who may write the Secret can set).
        def refused():
            st = srot(ns, "hm").get("status", {})
            return st if "capstan.dev/allow-adoption" in st.get("message", "") else None
        st = kube.wait_until(refused, 30, what="adoption refused without the Secret's consent")
        assert st["phase"] == "Stalled" and st["reason"] == "Conflict"
        assert "capstan.dev/secret-rotation" not in \
            secret(ns, "handmade")["metadata"].get("labels", {})
        kube.kubectl("-n", ns, "annotate", "secret", "handmade", "capstan.dev/allow-adoption=true")
        wait_status(ns, "hm", phase="Ready")
        s = secret(ns, "handmade")
        assert s["metadata"]["labels"]["capstan.dev/secret-rotation"] == "hm"
        assert not s["metadata"].get("ownerReferences"), "adopted, not owned"
        assert plain(s["data"]["jwt-key"]) == "hand-made-value-0123456789", \
            "adoption changes no value; the schedule starts now"
        kube.kubectl("-n", ns, "annotate", "secretrotation", "hm", "capstan.dev/rotate=1")
        wait_status(ns, "hm", phase="Ready", currentVersion="2")
        d = data(ns, "handmade")
        assert plain(d["jwt-key"]) != "hand-made-value-0123456789"
        assert plain(d["other"]) == "x", "keys not listed are never touched"
        # Deleting the SecretRotation keeps an adopted Secret.
        kube.kubectl("-n", ns, "delete", "secretrotation", "hm")
        # The operator has handled the delete once it dropped the SecretRotation's gauge.
        gauge = f'capstan_secret_rotation_next_seconds{{name="hm",namespace="{ns}"}}'
        kube.wait_until(lambda: gauge not in box["op"].get("/metrics")[1], 30,
                        what="the deleted SecretRotation forgotten")
        assert kube.exists("secret", "handmade", ns)


@pytest.mark.parametrize("spec,message", [
    ({"interval": "7d"}, "spec.interval"),
    ({"interval": "500ms"}, "at least 1s"),
    ({"keys": [{"name": "k", "randomBytes": {}, "uuid": {}}]}, "exactly one of"),
    ({"keys": [{"name": "k_previous", "uuid": {}}]}, "reserved"),
    ({"strategy": {"type": "KeepPrevious", "gracePeriod": "800h"}}, "shorter than interval"),
    ({"consumers": {"mode": "Explicit"}}, "consumers.deployments"),
    ({"keys": [{"name": "k", "keyPair": {"type": "EC", "rsaBits": 2048}}]},
     "rsaBits is only used with type RSA"),
    ({"keys": [{"name": "k", "keyPair": {"type": "RSA", "rsaBits": 1024}}]}, "rsaBits"),
    ({"schedule": "@daily"}, "set exactly one of interval and schedule"),
    ({"timeZone": "Europe/Berlin"}, "timeZone is only used with schedule"),
    ({"trigger": "Never"}, "Unsupported value"),
    ({"consumers": {"mode": "Explicit", "workloads": [{"kind": "CronJob", "name": "x"}]}},
     "Unsupported value"),
])
def test_schema_rejects_bad_secretrotations(spec, message):
    with kube.Namespace("srotbad") as ns:
        body = rotation("bad", "bad", "720h")
        body["spec"].update(spec)
        p = kube.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body), check=False)
        assert p.returncode != 0
        assert message in p.stderr, p.stderr


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], input=input, capture_output=True,
                          check=True).stdout


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_members(public_pem, kty, crv=None):
    """The JWK members of a public key PEM, as the openssl CLI reads it."""
    if kty == "RSA":
        modulus = openssl("rsa", "-pubin", "-modulus", "-noout", input=public_pem)
        n = bytes.fromhex(modulus.decode().strip().split("=", 1)[1])
        text = openssl("rsa", "-pubin", "-text", "-noout", input=public_pem).decode()
        e = int(text.split("Exponent:", 1)[1].split()[0])
        return {"n": b64url(n), "e": b64url(e.to_bytes((e.bit_length() + 7) // 8, "big"))}
    der = openssl("pkey", "-pubin", "-outform", "DER", input=public_pem)
    if kty == "EC":
        size = {"P-256": 32, "P-384": 48}[crv]
        point = der[-(2 * size + 1):]
        assert point[0] == 4, "an uncompressed point"
        return {"crv": crv, "x": b64url(point[1:size + 1]), "y": b64url(point[size + 1:])}
    return {"crv": "Ed25519", "x": b64url(der[-32:])}


def thumbprint(jwk):
    """RFC 7638: SHA-256 of the required members, sorted, no whitespace."""
    required = {"RSA": ["e", "kty", "n"], "EC": ["crv", "kty", "x", "y"],
                "OKP": ["crv", "kty", "x"]}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, sort_keys=True,
                           separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def check_jwk(jwk, private_pem, kty, alg, crv=None):
    """The JWK is the public half of private_pem, with the members RFC 7517/7518/8037 ask."""
    public_pem = openssl("pkey", "-pubout", input=private_pem)
    want = {"kty": kty, "alg": alg, "use": "sig", **public_members(public_pem, kty, crv)}
    want["kid"] = thumbprint(want)
    assert jwk == want
    for v in jwk.values():
        assert "=" not in v and "+" not in v and "/" not in v, "base64url without padding"


@pytest.mark.parametrize("key_pair,kty,alg,crv", [
    ({"type": "RSA", "rsaBits": 2048}, "RSA", "RS256", None),
    ({"type": "EC", "curve": "P-384"}, "EC", "ES384", "P-384"),
    ({"type": "Ed25519"}, "OKP", "EdDSA", "Ed25519"),
])
def test_key_pair_rotation_publishes_both_public_keys_during_grace(key_pair, kty, alg, crv):
    with running() as (ns, box):
        watch = SecretValues(ns, "tokens")
        try:
            kube.apply(volume_consumer("verifier", "tokens"), ns)
            kube.apply(rotation("tokens", "tokens", "720h",
                                keys=[{"name": "signing.key",
                                       "keyPair": {**key_pair, "jwksKey": "jwks.json"}}],
                                strategy={"type": "KeepPrevious", "gracePeriod": "15s"}), ns)
            wait_status(ns, "tokens", phase="Ready", currentVersion="1")
            first = data(ns, "tokens")
            watch.record_now(secret(ns, "tokens"))
            assert sorted(first) == ["jwks.json", "signing.key", "signing.key.pub"]
            first_key = base64.b64decode(first["signing.key"])
            assert first_key.startswith(b"-----BEGIN PRIVATE KEY-----\n"), "PKCS#8"
            # The public key PEM is the private key's public half (openssl reads both).
            assert base64.b64decode(first["signing.key.pub"]) == \
                openssl("pkey", "-pubout", input=first_key)
            jwks = json.loads(base64.b64decode(first["jwks.json"]))
            assert len(jwks["keys"]) == 1
            check_jwk(jwks["keys"][0], first_key, kty, alg, crv)

            kube.kubectl("-n", ns, "annotate", "secretrotation", "tokens", "capstan.dev/rotate=1")
            wait_status(ns, "tokens", phase="Ready", currentVersion="2")
            # During the grace period the JWKS lists the new key, then the previous one.
            # The watch saw every version of the Secret, so this does not race the 15 s.
            during = [d for state, d in watch.seen_states()
                      if state == "Idle" and "signing.key_previous" in d]
            assert during, "the Secret held the previous key after the rotation"
            second = during[0]
            second_key = base64.b64decode(second["signing.key"])
            assert second_key != first_key
            assert base64.b64decode(second["signing.key_previous"]) == first_key
            assert base64.b64decode(second["signing.key.pub_previous"]) == \
                base64.b64decode(first["signing.key.pub"])
            both = json.loads(base64.b64decode(second["jwks.json"]))["keys"]
            assert len(both) == 2
            check_jwk(both[0], second_key, kty, alg, crv)
            check_jwk(both[1], first_key, kty, alg, crv)
            assert both[1] == jwks["keys"][0], "the previous key's JWK is unchanged"
            uid = srot(ns, "tokens")["metadata"]["uid"]
            assert stamp(ns, "verifier", "tokens") == \
                hashlib.sha256(f"{uid}/2".encode()).hexdigest()[:16], "the consumer restarted"

            # Grace over: the previous key leaves the Secret and the JWKS.
            def after_grace():
                d = data(ns, "tokens")
                return d if "signing.key_previous" not in d else None
            final = kube.wait_until(after_grace, 60, what="the previous key cleared")
            watch.record_now(secret(ns, "tokens"))
            assert sorted(final) == ["jwks.json", "signing.key", "signing.key.pub"]
            assert final["signing.key"] == second["signing.key"]
            only = json.loads(base64.b64decode(final["jwks.json"]))["keys"]
            assert only == [both[0]]
        finally:
            watch.stop()
        assert_no_value_leaked(ns, "tokens", box["op"], watch.all_values())


def statefulset_consumer(name, secret, replicas=2):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {
            "serviceName": name, "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [{"name": "db", "image": "registry.example/db:1",
                                "volumeMounts": [{"name": "keys", "mountPath": "/keys"}]}],
                "volumes": [{"name": "keys", "secret": {"secretName": secret}}]}},
        },
    }


def daemonset_consumer(name, secret):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [{"name": "agent", "image": "registry.example/agent:1",
                                "envFrom": [{"secretRef": {"name": secret}}]}]}},
        },
    }


def workload_stamp(ns, kind, name, secret_name):
    w = kube.get(kind, name, ns)
    return (w["spec"]["template"]["metadata"].get("annotations") or {}).get(
        f"secret-version.capstan.dev/{secret_name}", "")


def test_statefulset_and_daemonset_consumers_restart_one_at_a_time():
    with running() as (ns, box):
        watch = SecretValues(ns, "shared-keys")
        try:
            kube.apply([statefulset_consumer("db", "shared-keys"),
                        daemonset_consumer("agent", "shared-keys")], ns)
            kube.apply(rotation("shared", "shared-keys", "720h",
                                keys=[{"name": "jwt-key", "randomBytes": {"length": 32}}],
                                consumers={"mode": "Auto", "maxConcurrentRestarts": 1}), ns)
            st = wait_status(ns, "shared", phase="Ready", currentVersion="1")
            assert sorted(st["consumers"]) == ["agent", "db"], "auto discovery of both kinds"
            for kind in ("statefulset/db", "daemonset/agent"):
                kube.kubectl("-n", ns, "rollout", "status", kind, "--timeout=90s")
            pods_before = {p["metadata"]["name"]: p["metadata"]["uid"]
                           for p in kube.get("pods", namespace=ns)["items"]}
            assert len(pods_before) == 5, "2 StatefulSet pods and one agent per KWOK node"

            kube.kubectl("-n", ns, "annotate", "secretrotation", "shared", "capstan.dev/rotate=1")
            wait_status(ns, "shared", timeout=120, phase="Ready", currentVersion="2")
            watch.record_now(secret(ns, "shared-keys"))
            uid = srot(ns, "shared")["metadata"]["uid"]
            want = hashlib.sha256(f"{uid}/2".encode()).hexdigest()[:16]
            assert workload_stamp(ns, "statefulset", "db", "shared-keys") == want
            assert workload_stamp(ns, "daemonset", "agent", "shared-keys") == want
            for kind in ("statefulset/db", "daemonset/agent"):
                kube.kubectl("-n", ns, "rollout", "status", kind, "--timeout=90s")
            sts = kube.get("statefulset", "db", ns)["status"]
            assert sts["currentRevision"] == sts["updateRevision"]
            # Every pod was replaced (a restart, not only a template change).
            pods_after = {p["metadata"]["name"]: p["metadata"]["uid"]
                          for p in kube.get("pods", namespace=ns)["items"]}
            assert not set(pods_after.values()) & set(pods_before.values())
            # One at a time: agent first (names sort), db once agent was healthy.
            events = sorted(kube.events(ns, "ConsumersRestarted"),
                            key=lambda e: e.get("eventTime") or e["metadata"]["creationTimestamp"])
            notes = [e.get("note", "") for e in events]
            assert len(notes) == 2, notes
            assert notes[0].startswith("restarting DaemonSet agent ") and \
                "the others once these are healthy" in notes[0]
            assert notes[1].startswith("restarting StatefulSet db ")
        finally:
            watch.stop()
        assert_no_value_leaked(ns, "shared", box["op"], watch.all_values())
