"""A real Prometheus (Debian's `prometheus` package) on a free loopback port for tests:
1 s scrape interval, a throw-away TSDB directory, stopped cleanly (SIGTERM, then
SIGKILL after 10 s) so no process outlives the test.

    with PrometheusServer(targets=["127.0.0.1:8123"]) as prom:
        prom.url          # http://127.0.0.1:<port>
        prom.query("up")  # the API answer's data.result
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PrometheusServer:
    def __init__(self, targets, binary=None, log_dir=None):
        self.binary = binary or shutil.which("prometheus") or "/usr/bin/prometheus"
        self.targets = targets
        self.log_dir = log_dir
        self.proc = None
        self.dir = None
        self.port = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=60):
        if not os.path.exists(self.binary):
            raise RuntimeError("prometheus is not installed (make deps installs Debian's package)")
        self.dir = tempfile.mkdtemp(prefix="capstan-prom-")
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: sim\n    scrape_interval: 1s\n"
                    "    static_configs:\n      - targets: " + json.dumps(self.targets) + "\n")
        self.port = self.port or _free_port()
        self.log_path = os.path.join(self.log_dir or self.dir, f"prometheus-{self.port}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: "
                                   + open(self.log_path).read()[-2000:])
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready")

    def query(self, q):
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())["data"]["result"]

    def stop(self):
        """Stops the server (idempotent); the port stays reserved for a restart()."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def close(self):
        self.stop()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
