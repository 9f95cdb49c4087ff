"""A loopback traffic simulator for the analysis tests: serves, on /metrics, the request
counters and latency histograms a real service would export, per revision and status
code, for the revisions the test configures; Prometheus scrapes it.

    sim = TrafficSim(service="web").start()          # 127.0.0.1:<free port>
    sim.set("5f2c0a1b2c", error_ratio=0.3, latency=0.2)
    ... sim.port ...
    sim.stop()

Counters advance with wall-clock time at `rps` requests per second per revision (so
rate() over any window is rps * error_ratio for 5xx). Every request of a revision takes
`latency` seconds (the histogram puts all of them in the first bucket >= latency).
Labels follow what instrumented services export: service, revision, code, le.
Run as a program for a manual look: python3 traffic_sim.py [port].
"""
import http.server
import json
import sys
import threading
import time

BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]


class _Revision:
    def __init__(self, rps, error_ratio, latency, now):
        self.rps, self.error_ratio, self.latency = rps, error_ratio, latency
        self.ok = 0.0
        self.errors = 0.0
        self.latency_sum = 0.0
        self.buckets = [0.0] * len(BUCKETS)
        self.last = now

    def advance(self, now):
        n = self.rps * max(0.0, now - self.last)
        self.last = now
        self.errors += n * self.error_ratio
        self.ok += n * (1 - self.error_ratio)
        self.latency_sum += n * self.latency
        for i, le in enumerate(BUCKETS):
            if self.latency <= le:
                self.buckets[i] += n


class TrafficSim:
    def __init__(self, service="web", port=0):
        self.service = service
        self.revisions = {}
        self.lock = threading.Lock()
        sim = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = sim.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                # POST /revision {"revision": ..., "error_ratio": ..., "latency": ..., "rps": ...}
                n = int(self.headers.get("Content-Length", 0))
                cfg = json.loads(self.rfile.read(n) or b"{}")
                sim.set(cfg.pop("revision"), **cfg)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = None

    def set(self, revision, error_ratio=0.0, latency=0.05, rps=50.0):
        """Sets (or changes) a revision's traffic from now on; counters keep counting."""
        now = time.monotonic()
        with self.lock:
            r = self.revisions.get(revision)
            if r is None:
                self.revisions[revision] = _Revision(rps, error_ratio, latency, now)
            else:
                r.advance(now)
                r.rps, r.error_ratio, r.latency = rps, error_ratio, latency

    def render(self):
        now = time.monotonic()
        lines = ["# HELP http_requests_total Requests served, by revision and status code.",
                 "# TYPE http_requests_total counter"]
        hist = ["# HELP http_request_duration_seconds Request latency.",
                "# TYPE http_request_duration_seconds histogram"]
        with self.lock:
            for rev, r in sorted(self.revisions.items()):
                r.advance(now)
                base = f'service="{self.service}",revision="{rev}"'
                lines.append(f'http_requests_total{{{base},code="200"}} {r.ok:.3f}')
                lines.append(f'http_requests_total{{{base},code="500"}} {r.errors:.3f}')
                total = r.ok + r.errors
                for le, c in zip(BUCKETS, r.buckets):
                    hist.append(f'http_request_duration_seconds_bucket{{{base},le="{le}"}} {c:.3f}')
                hist.append(f'http_request_duration_seconds_bucket{{{base},le="+Inf"}} {total:.3f}')
                hist.append(f'http_request_duration_seconds_sum{{{base}}} {r.latency_sum:.3f}')
                hist.append(f'http_request_duration_seconds_count{{{base}}} {total:.3f}')
        return "\n".join(lines + hist) + "\n"

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        if self.thread:
            self.thread.join(5)


if __name__ == "__main__":
    sim = TrafficSim(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    sim.set("demo", error_ratio=0.1)
    print(f"serving on 127.0.0.1:{sim.port}/metrics", flush=True)
    sim.server.serve_forever()
