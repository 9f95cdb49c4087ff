"""SecretRotation with spec.target.postgresql against a REAL PostgreSQL (Debian's
package, tests/tools/postgres_fixture.py: initdb in a temporary directory, a free
loopback port, `log_statement = all`, stopped cleanly).

KWOK pods never run, so the consumers here cannot log in; a prober thread plays the
application instead: every 100 ms it logs in with whatever the Secret holds (as the
`kubectl get -w` watch last saw it) for the whole rotation and counts the failures.
At the end every value the Secret ever held is grepped for in the operator's log, the
Events, the SecretRotation, /metrics and the PostgreSQL server log."""
import contextlib
import json
import os
import re
import sys
import threading
import time

import pytest

import kube
from test_secret_rotation import (SecretValues, assert_no_value_leaked, data, plain, secret,
                                  slow_secret_writes, srot, wait_status)

sys.path.insert(0, os.path.join(kube.SOURCE_DIR, "tests", "tools"))
from postgres_fixture import PostgresServer  # noqa: E402

try:
    import psycopg2
except ImportError:  # Debian's python3-psycopg2 under another Python 3.11
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import psycopg2
    except ImportError:
        psycopg2 = None

ADMIN_PASSWORD = "adm-" + os.urandom(12).hex()
WEAK_PASSWORD = "weak-" + os.urandom(12).hex()


@pytest.fixture(scope="module", autouse=True)
def crds():
    kube.install_crds("secretrotations.capstan.dev")


@pytest.fixture(scope="module")
def pg():
    server = PostgresServer(log_dir=os.environ.get("CAPSTAN_CLUSTER_DIR"))
    with server:
        server.sql(f"CREATE ROLE capstan_admin LOGIN CREATEROLE PASSWORD '{ADMIN_PASSWORD}'",
                   log=False)
        server.sql(f"CREATE ROLE weak_admin LOGIN PASSWORD '{WEAK_PASSWORD}'", log=False)
        server.sql("CREATE ROLE app_grants NOLOGIN")
        yield server
    assert server.proc.poll() is not None, "postgres stopped"


def login(pg, user, password):
    if psycopg2 is None:
        return pg.login(user, password)
    try:
        psycopg2.connect(host="127.0.0.1", port=pg.port, user=user, password=password,
                         dbname="postgres", connect_timeout=3, sslmode="disable").close()
        return True
    except psycopg2.OperationalError:
        return False


class Prober:
    """Logs in every 100 ms with the Secret's username and password as the watch last
    saw them (what a restarted pod would read)."""

    def __init__(self, pg, watch):
        self.pg, self.watch = pg, watch
        self.attempts = 0
        self.failures = []
        self.stop_ = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def current(self):
        for _, d in reversed(self.watch.seen_states()):
            if "username" in d and "password" in d:
                return plain(d["username"]), plain(d["password"])
        return None

    def _run(self):
        while not self.stop_.is_set():
            started = time.monotonic()
            cred = self.current()
            if cred:
                self.attempts += 1
                if not login(self.pg, *cred):
                    self.failures.append(cred[0])
            self.stop_.wait(max(0.0, 0.1 - (time.monotonic() - started)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_.set()
        self.thread.join()


def admin_secret(ns, name="pg-admin", user="capstan_admin", password=ADMIN_PASSWORD):
    kube.kubectl("-n", ns, "create", "secret", "generic", name, f"--from-literal=username={user}",
                 f"--from-literal=password={password}")


def pg_rotation(name, secret_name, pg, strategy="AlternatingUsers", users=None, user=None,
                admin="pg-admin", port=None, **spec):
    target = {"host": "127.0.0.1", "port": port or pg.port, "database": "postgres",
              "sslMode": "disable", "adminSecretRef": {"name": admin}, "strategy": strategy}
    if strategy == "AlternatingUsers":
        target["users"] = users
        target["memberOf"] = "app_grants"
    else:
        target["user"] = user
    return {
        "apiVersion": "capstan.dev/v1alpha1",
        "kind": "SecretRotation",
        "metadata": {"name": name},
        "spec": {"secretName": secret_name, "interval": "720h",
                 "keys": [{"name": "password", "password": {"length": 32}}],
                 "target": {"postgresql": target}, **spec},
    }


def consumer(name, secret_name, replicas=1, **spec):
    d = kube.deployment(name, "registry.example/app:1", replicas)
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "PGUSER", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "username"}}},
        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": secret_name,
                                                               "key": "password"}}}]
    d["spec"].update(spec)
    return d


@contextlib.contextmanager
def operator(ns, *args):
    op = kube.Operator(f"--namespace={ns}", *args).start()
    try:
        yield op
    finally:
        op.stop()


def users_for(ns):
    tag = ns.split("-")[-1]
    return [f"app_{tag}_a", f"app_{tag}_b"]


def creds(ns, name):
    d = data(ns, name)
    return plain(d["username"]), plain(d["password"])


def assert_nothing_leaked(ns, name, ops, watch, pg):
    values = watch.all_values() | {ADMIN_PASSWORD, WEAK_PASSWORD}
    assert_no_value_leaked(ns, name, ops, values)
    log = pg.log()
    assert "ALTER ROLE" in log or "CREATE ROLE" in log, "the server logged the statements"
    for v in values:
        if len(v) >= 16:
            assert v not in log, "a password appears in the PostgreSQL server log"


def role_statements(pg, user):
    """The CREATE/ALTER ROLE statements for `user` that can have taken effect. The set
    step runs in a transaction (CREATE ROLE, GRANT, COMMIT); a process killed inside
    it leaves a backend that logs "unexpected EOF ... with an open transaction" and
    rolls back, and its statement (logged when received) changed nothing."""
    lines = pg.log().splitlines()
    pid = re.compile(r"\[(\d+)\]")
    rolled_back = {m.group(1) for l in lines
                   if "unexpected EOF on client connection with an open transaction" in l
                   for m in [pid.search(l)] if m}
    return [l for l in lines if "statement:" in l and
            ("ALTER ROLE" in l or "CREATE ROLE" in l) and f'"{user}"' in l
            and not ((m := pid.search(l)) and m.group(1) in rolled_back)]


def test_alternating_users_rotate_with_zero_failed_logins(pg):
    with kube.Namespace("pgalt") as ns, operator(ns, "--log_level=trace") as op:
        watch = SecretValues(ns, "db-creds")
        a, b = users_for(ns)
        try:
            admin_secret(ns)
            kube.apply(consumer("api", "db-creds", replicas=2), ns)
            kube.apply(pg_rotation("db", "db-creds", pg, users=[a, b]), ns)
            st = wait_status(ns, "db", timeout=90, phase="Ready", currentVersion="1")
            assert st["currentUser"] == a and st["consumers"] == ["api"]
            user, password = creds(ns, "db-creds")
            assert user == a and login(pg, a, password)
            assert pg.sql(f"SELECT pg_has_role('{a}', 'app_grants', 'MEMBER')") == "t"
            assert pg.sql(f"SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid "
                          f"WHERE rolname = '{a}'") == "t"
            with Prober(pg, watch) as prober:
                kube.wait_until(lambda: prober.attempts >= 3, 30, what="the prober logging in")
                durations = []
                for round_, (want_user, version) in enumerate(((b, "2"), (a, "3")), 1):
                    before = creds(ns, "db-creds")
                    t0 = time.monotonic()
                    kube.kubectl("-n", ns, "annotate", "--overwrite", "secretrotation", "db",
                                 f"capstan.dev/rotate=r{round_}")
                    wait_status(ns, "db", timeout=90, phase="Ready", currentVersion=version,
                                currentUser=want_user)
                    durations.append(time.monotonic() - t0)
                    user, password = creds(ns, "db-creds")
                    assert user == want_user and password != before[1]
                    assert login(pg, user, password), "the new credential works"
                    assert login(pg, *before), "the previous user keeps working"
                    kube.kubectl("-n", ns, "rollout", "status", "deployment/api",
                                 "--timeout=60s")
                # A few more probes with the final credential.
                n = prober.attempts
                kube.wait_until(lambda: prober.attempts >= n + 5, 30, what="more probes")
            print(f"\nAlternatingUsers rotation end to end: "
                  f"{', '.join(f'{d:.1f}s' for d in durations)}; prober: {prober.attempts} "
                  f"logins, {len(prober.failures)} failed")
            assert prober.failures == [], f"failed logins as {prober.failures}"
            assert not [k for k in data(ns, "db-creds") if k.startswith(".capstan-")]
            assert kube.events(ns, "Rotated")
            _, metrics = op.get("/metrics")
            assert f'capstan_secret_rotations_total{{name="db",namespace="{ns}",' \
                   f'result="succeeded",target="postgresql"}} 3' in metrics, \
                "the first password and two rotations"
        finally:
            watch.stop()
        assert_nothing_leaked(ns, "db", op, watch, pg)


def test_single_user_changes_the_password_in_place(pg):
    with kube.Namespace("pgone") as ns, operator(ns) as op:
        watch = SecretValues(ns, "one-creds")
        user = users_for(ns)[0]
        pg.sql(f"CREATE ROLE {user} LOGIN PASSWORD 'initial-{os.urandom(8).hex()}'")
        try:
            admin_secret(ns)
            kube.apply(consumer("one", "one-creds"), ns)
            kube.apply(pg_rotation("one", "one-creds", pg, strategy="SingleUser", user=user), ns)
            wait_status(ns, "one", timeout=90, phase="Ready", currentVersion="1", currentUser=user)
            first = creds(ns, "one-creds")
            assert login(pg, *first)
            kube.kubectl("-n", ns, "annotate", "secretrotation", "one", "capstan.dev/rotate=1")
            wait_status(ns, "one", timeout=90, phase="Ready", currentVersion="2")
            second = creds(ns, "one-creds")
            assert second[0] == user and second[1] != first[1]
            assert login(pg, *second)
            assert not login(pg, *first), "SingleUser: the previous password stopped working"
            watch.record_now(secret(ns, "one-creds"))
        finally:
            watch.stop()
        assert_nothing_leaked(ns, "one", op, watch, pg)


def test_single_user_whose_test_fails_gets_its_previous_password_back(pg):
    """The set step changed the password, then logging in with it (to the database the
    rotation checks, where the user lost CONNECT) failed: the previous password is set
    back, so the application, which logs in to another database, keeps working."""
    with kube.Namespace("pgback") as ns, operator(ns) as op:
        watch = SecretValues(ns, "b-creds")
        user = users_for(ns)[0]
        check_db = f"check_{user}"
        pg.sql(f"CREATE ROLE {user} LOGIN PASSWORD 'initial-{os.urandom(8).hex()}'")
        pg.sql(f"CREATE DATABASE {check_db}")
        try:
            admin_secret(ns)
            kube.apply(consumer("b", "b-creds"), ns)
            r = pg_rotation("b", "b-creds", pg, strategy="SingleUser", user=user)
            r["spec"]["target"]["postgresql"]["database"] = check_db
            kube.apply(r, ns)
            wait_status(ns, "b", timeout=90, phase="Ready", currentVersion="1", currentUser=user)
            first = creds(ns, "b-creds")
            assert login(pg, *first)
            before = data(ns, "b-creds")
            pg.sql(f"REVOKE CONNECT ON DATABASE {check_db} FROM PUBLIC")
            pg.sql(f"GRANT CONNECT ON DATABASE {check_db} TO capstan_admin")
            kube.kubectl("-n", ns, "annotate", "secretrotation", "b", "capstan.dev/rotate=1")
            st = wait_status(ns, "b", timeout=60, phase="Failed")
            assert st["failedStep"] == "test", st
            assert f"previous password of {user} was set back" in st["message"], st["message"]
            assert data(ns, "b-creds") == before, "nothing switched"
            assert login(pg, *first), "the previous password works again"
            ev = kube.events(ns, "RotationFailed")
            assert ev and "was set back" in ev[0]["note"]
            watch.record_now(secret(ns, "b-creds"))
        finally:
            watch.stop()
        assert_nothing_leaked(ns, "b", op, watch, pg)
        pg.sql(f"DROP DATABASE {check_db}")


def test_admin_without_privilege_switches_nothing_and_names_the_step(pg):
    with kube.Namespace("pgweak") as ns, operator(ns) as op:
        watch = SecretValues(ns, "w-creds")
        a, b = users_for(ns)
        try:
            admin_secret(ns)
            admin_secret(ns, "pg-weak", "weak_admin", WEAK_PASSWORD)
            kube.apply(pg_rotation("w", "w-creds", pg, users=[a, b]), ns)
            wait_status(ns, "w", timeout=90, phase="Ready", currentVersion="1")
            before = data(ns, "w-creds")
            kube.kubectl("-n", ns, "patch", "secretrotation", "w", "--type=json", "-p", json.dumps(
                [{"op": "replace", "path": "/spec/target/postgresql/adminSecretRef/name",
                  "value": "pg-weak"}]))
            kube.kubectl("-n", ns, "annotate", "secretrotation", "w", "capstan.dev/rotate=1")
            st = wait_status(ns, "w", timeout=60, phase="Failed")
            assert st["reason"] == "DatabaseStepFailed" and st["failedStep"] == "set"
            assert "database step set" in st["message"] and "weak_admin" in st["message"]
            assert "permission denied" in st["message"] or "must have" in st["message"]
            cond = kube.condition(srot(ns, "w"), "Ready")
            assert cond["status"] == "False" and cond["reason"] == "DatabaseStepFailed"
            ev = kube.events(ns, "RotationFailed")
            assert ev and ev[0]["type"] == "Warning" and "nothing switched" in ev[0]["note"]
            assert data(ns, "w-creds") == before, "nothing switched, no pending value left"
            assert login(pg, *creds(ns, "w-creds"))
            assert pg.sql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{b}'") == "0"
            watch.record_now(secret(ns, "w-creds"))
        finally:
            watch.stop()
        assert_nothing_leaked(ns, "w", op, watch, pg)


def test_unhealthy_consumer_switches_back_to_the_previous_user(pg):
    """As in test_secret_rotation: the test plays an application that cannot start
    with the new credential (its image becomes `neverready` once the Secret changed)."""
    with kube.Namespace("pgsick") as ns, operator(ns, "--resync_seconds=1") as op:
        watch = SecretValues(ns, "s-creds")
        a, b = users_for(ns)
        try:
            admin_secret(ns)
            kube.apply(consumer("picky", "s-creds", replicas=2, minReadySeconds=4,
                                strategy={"rollingUpdate": {"maxUnavailable": 0,
                                                            "maxSurge": 1}}), ns)
            kube.apply(pg_rotation("s", "s-creds", pg, users=[a, b],
                                   onFailure={"action": "Restore", "healthTimeout": "10s"}), ns)
            wait_status(ns, "s", timeout=90, phase="Ready", currentVersion="1")
            kube.kubectl("-n", ns, "rollout", "status", "deployment/picky", "--timeout=60s")
            original = data(ns, "s-creds")
            kube.kubectl("-n", ns, "annotate", "secretrotation", "s", "capstan.dev/rotate=1")
            kube.wait_until(lambda: plain(data(ns, "s-creds")["username"]) == b, 60,
                            interval=0.1, what="the Secret switched to the other user")
            image = "/spec/template/spec/containers/0/image"
            kube.kubectl("-n", ns, "patch", "deployment", "picky", "--type=json", "-p",
                         json.dumps([{"op": "replace", "path": image,
                                      "value": "registry.example/app:neverready"}]))
            st = wait_status(ns, "s", timeout=90, phase="Failed")
            assert st["reason"] == "ConsumersUnhealthy" and st["currentUser"] == a
            assert data(ns, "s-creds") == original, "the Secret is back to the previous user"
            assert login(pg, *creds(ns, "s-creds")), "the previous user still logs in"
            watch.record_now(secret(ns, "s-creds"))
        finally:
            watch.stop()
        assert_nothing_leaked(ns, "s", op, watch, pg)


@pytest.mark.parametrize("kill_after", ["Pending", "DatabaseSet", "Swapped", "Restarted"])
def test_kill9_after_each_step_converges(pg, kill_after):
    with kube.Namespace("pgk9") as ns, slow_secret_writes(2) as proxy_cfg:
        first = kube.Operator(f"--namespace={ns}", f"--kubeconfig={proxy_cfg}").start()
        op = first
        watch = SecretValues(ns, "k-creds")
        a, b = users_for(ns)
        try:
            admin_secret(ns)
            kube.apply(consumer("k", "k-creds", replicas=2, minReadySeconds=2), ns)
            kube.apply(pg_rotation("k", "k-creds", pg, users=[a, b]), ns)
            wait_status(ns, "k", timeout=90, phase="Ready", currentVersion="1")
            before = creds(ns, "k-creds")
            kube.kubectl("-n", ns, "annotate", "secretrotation", "k", "capstan.dev/rotate=1")

            def state():
                ann = secret(ns, "k-creds")["metadata"].get("annotations") or {}
                return ann.get("capstan.dev/rotation-state", "Idle")
            if kill_after == "DatabaseSet":
                # Pending, and b already logs in with the pending password: the set step
                # is done, the Swapped write (held 2 s by the proxy) not yet.
                def set_done():
                    d = secret(ns, "k-creds").get("data", {})
                    pending = d.get(".capstan-pending.password")
                    return pending and login(pg, b, plain(pending))
                kube.wait_until(set_done, 60, interval=0.05, what="b's password set")
            else:
                kube.wait_until(lambda: state() == kill_after, 60, interval=0.05,
                                what=f"state {kill_after}")
            first.kill9()
            watch.record_now(secret(ns, "k-creds"))
            op = kube.Operator(f"--namespace={ns}").start()
            wait_status(ns, "k", timeout=90, phase="Ready", currentVersion="2", currentUser=b)
            user, password = creds(ns, "k-creds")
            assert user == b and login(pg, b, password)
            assert login(pg, *before), "the previous user keeps working"
            if kill_after == "DatabaseSet":
                # The killed process had set b's password. The next one either finds the
                # Swapped write landed (the proxy forwards a held request after the kill)
                # or resumes in Pending, finds the password by logging in and does not
                # set it again.
                assert f"user={b} password set and tested" not in op.logs()
                if f"database user={b}" in op.logs():
                    assert f"user={b} password already set" in op.logs()
            assert len(role_statements(pg, b)) == 1, "b's password was set exactly once"
            assert not [k for k in data(ns, "k-creds") if k.startswith(".capstan-")]
            watch.record_now(secret(ns, "k-creds"))
            watch.stop()
            assert_nothing_leaked(ns, "k", [first, op], watch, pg)
        finally:
            watch.stop()
            first.stop()
            op.stop()


def test_bad_input_gets_a_condition_and_leaves_the_secret_untouched(pg):
    with kube.Namespace("pgbad") as ns, operator(ns) as op:
        watch = SecretValues(ns, "b-creds")
        a, b = users_for(ns)
        try:
            admin_secret(ns)
            admin_secret(ns, "pg-wrong", "capstan_admin", "not-the-password-0123456789")
            # A users list of one: Stalled before anything is written.
            kube.apply(pg_rotation("one", "one-creds", pg, users=[a]), ns)
            st = wait_status(ns, "one", phase="Stalled")
            assert st["reason"] == "InvalidSpec" and "exactly two different users" in st["message"]
            assert kube.events(ns, "InvalidSpec")
            assert not kube.exists("secret", "one-creds", ns)

            kube.apply(pg_rotation("b", "b-creds", pg, users=[a, b]), ns)
            wait_status(ns, "b", timeout=90, phase="Ready", currentVersion="1")
            before = data(ns, "b-creds")
            path = "/spec/target/postgresql"
            for i, (patch, words) in enumerate((
                    ({"op": "replace", "path": f"{path}/port", "value": kube.free_port()},
                     "cannot log in to PostgreSQL"),
                    ({"op": "replace", "path": f"{path}/adminSecretRef/name", "value": "pg-wrong"},
                     "password authentication failed"))):
                kube.kubectl("-n", ns, "patch", "secretrotation", "b", "--type=json", "-p",
                             json.dumps([patch]))
                kube.kubectl("-n", ns, "annotate", "--overwrite", "secretrotation", "b",
                             f"capstan.dev/rotate=bad{i}")
                st = wait_status(ns, "b", timeout=60, phase="Failed", lastTriggerToken=f"bad{i}")
                assert st["failedStep"] == "connect" and words in st["message"], st["message"]
                assert data(ns, "b-creds") == before, "the Secret's values are untouched"
                assert kube.events(ns, "RotationFailed")
                # Put it back for the next case.
                kube.apply(pg_rotation("b", "b-creds", pg, users=[a, b]), ns)
            kube.kubectl("-n", ns, "annotate", "--overwrite", "secretrotation", "b",
                         "capstan.dev/rotate=good")
            wait_status(ns, "b", timeout=60, phase="Ready", currentVersion="2", currentUser=b)
            assert login(pg, *creds(ns, "b-creds"))
            watch.record_now(secret(ns, "b-creds"))
        finally:
            watch.stop()
        assert_nothing_leaked(ns, "b", op, watch, pg)
