"""A real PostgreSQL (Debian's `postgresql` package) on a free loopback port for tests,
in the manner of prometheus_fixture.py: initdb into a throw-away directory, the server
started on 127.0.0.1:<free port> with `log_statement = all` (every statement in the
log, so tests can grep it for passwords), stopped cleanly (SIGINT: fast shutdown, then
SIGKILL after 10 s) so no process outlives the test. The server runs as the
`postgres` user when the tests run as root (PostgreSQL refuses to run as root).

    with PostgresServer() as pg:
        pg.sql("CREATE ROLE x LOGIN PASSWORD 'y'")   # as the superuser
        pg.login("x", "y")                           # True when the server accepts it
        pg.log()                                      # the server log so far
"""
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("postgresql is not installed (make deps installs Debian's package)")
    return os.path.dirname(found[-1])


class PostgresServer:
    SUPERUSER = "postgres"

    def __init__(self, log_dir=None):
        self.bindir = _bindir()
        self.log_dir = log_dir
        self.proc = None
        self.dir = None
        self.port = None
        self.superuser_password = "su-" + os.urandom(12).hex()
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pwd.getpwnam(self.user)  # the package creates it

    def _run_as(self):
        return {"user": self.user} if self.user else {}

    def start(self, timeout=60):
        self.dir = tempfile.mkdtemp(prefix="capstan-pg-")
        data = os.path.join(self.dir, "data")
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(self.superuser_password + "\n")
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        subprocess.run([os.path.join(self.bindir, "initdb"), "-D", data, "-U", self.SUPERUSER,
                        f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
                        "--auth-local=scram-sha-256", "-E", "UTF8", "--no-instructions"],
                       check=True, capture_output=True, **self._run_as())
        os.remove(pwfile)
        self.port = self.port or _free_port()
        self.log_path = os.path.join(self.log_dir or self.dir, f"postgres-{self.port}.log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [os.path.join(self.bindir, "postgres"), "-D", data, "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", "log_statement=all", "-c", "log_connections=on",
             "-c", "password_encryption=scram-sha-256", "-c", "fsync=off"],
            stdout=self.log_file, stderr=subprocess.STDOUT, **self._run_as())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}: " + self.log()[-2000:])
            if self.login(self.SUPERUSER, self.superuser_password):
                return self
            time.sleep(0.2)
        raise RuntimeError("postgres did not accept connections")

    def _psql(self, user, password, sql, database="postgres", log=True):
        env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="3")
        if not log:
            env["PGOPTIONS"] = "-c log_statement=none"
        return subprocess.run(
            ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", user, "-d", database, "-c", sql],
            env=env, capture_output=True, text=True, timeout=30)

    def sql(self, statement, log=True):
        """Runs a statement as the superuser; returns its output. log=False keeps it out
        of the server log (a test's own CREATE ROLE ... PASSWORD)."""
        p = self._psql(self.SUPERUSER, self.superuser_password, statement, log=log)
        if p.returncode != 0:
            raise RuntimeError(f"psql failed: {p.stderr}")
        return p.stdout.strip()

    def login(self, user, password, database="postgres"):
        """True when the server accepts the credential (a fresh connection)."""
        return self._psql(user, password, "SELECT 1", database).returncode == 0

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        """Fast shutdown (idempotent): every backend goes with the postmaster."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log_file", None):
            self.log_file.close()
            self.log_file = None

    def close(self):
        self.stop()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
