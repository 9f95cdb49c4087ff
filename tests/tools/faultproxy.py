#!/usr/bin/env python3
"""A fault-injecting HTTP proxy between a Kubernetes client and the API server.

Listens on 127.0.0.1 (plain HTTP, no authentication) and forwards every request
to the API server over TLS with the client certificate of a kubeconfig, so a
client under test can be pointed at it with a kubeconfig that holds only
`server: http://127.0.0.1:<port>`. Python 3 standard library only.

    faultproxy.py --kubeconfig DIR/kubeconfig [--port 0]
                  [--write-kubeconfig proxy.kubeconfig] [--rule JSON]... [--verbose]

Once listening it prints one line to stdout and flushes it:

    faultproxy listening on 127.0.0.1:<port>

Faults are rules. A request is matched against the rules in the order they were
added; the first rule that matches (method and path regexes, `count` not used
up) applies to it, and its count goes down by one. Rule fields (JSON):

    method             regex matched against the whole method; default any
    path               regex searched in the request target (path and query, as
                       sent, so "watch=" picks watches); default any
    count              how many requests it applies to; -1 (default) = forever
    latency            seconds to wait before answering or forwarding
    status             answer with this HTTP status instead of forwarding; the
                       body is a metav1.Status with a matching reason
                       (409 Conflict, 429 TooManyRequests, 500 InternalError ...)
    reason, message    override the Status reason / message
    retry_after        with `status`: a Retry-After header (and
                       details.retryAfterSeconds), in seconds
    cut_after_bytes    forward, but cut the response after this many body bytes
    cut_after_seconds  forward, but cut the response this long after its headers
    cut_mode           "abort" (default): close the connection without ending the
                       body (a dropped connection); "end": end the chunked body
                       cleanly (as if the server had closed the watch)

Control API (on the same port, never forwarded):

    POST   /__faults/rules   a rule object or a list of them; answers {"ids": [...]}
    DELETE /__faults/rules   removes all rules
    POST   /__faults/reset   removes all rules and forgets the request log
    POST   /__faults/cut     drops every response being forwarded now (open
                             watches): answers {"cut": n}
    GET    /__faults/stats   {"total": n, "requests": [{"method", "target",
                             "status", "rule", "bytes"}...]} for every proxied request

Streaming (chunked) responses such as watches are forwarded chunk by chunk as
they arrive. Each forwarded request uses its own upstream connection
(Connection: close); client connections are kept alive. All traffic stays on
127.0.0.1 (the upstream is whatever the kubeconfig names; the test cluster binds
loopback only).

The kubeconfig reader handles what tests/cluster/cluster.sh writes: it takes the
first `server`, `certificate-authority[-data]`, `client-certificate[-data]` and
`client-key[-data]` in the file. --server/--ca/--cert/--key override them.
"""

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import ssl
import sys
import tempfile
import time
import urllib.parse

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length",
}

REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}

PHRASES = {
    200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 409: "Conflict", 410: "Gone",
    422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


def log(verbose_only, args, msg):
    if verbose_only and not args.verbose:
        return
    sys.stderr.write("[faultproxy %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class Rule:
    _next_id = 1

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise ValueError("a rule is a JSON object")
        known = {"method", "path", "count", "latency", "status", "reason", "message",
                 "retry_after", "cut_after_bytes", "cut_after_seconds", "cut_mode"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError("unknown rule fields: %s" % ", ".join(sorted(unknown)))
        self.id = Rule._next_id
        Rule._next_id += 1
        self.method = re.compile(spec.get("method", ".*"))
        self.path = re.compile(spec.get("path", ""))
        self.remaining = int(spec.get("count", -1))
        self.latency = float(spec.get("latency", 0))
        self.status = spec.get("status")
        self.reason = spec.get("reason")
        self.message = spec.get("message")
        self.retry_after = spec.get("retry_after")
        self.cut_after_bytes = spec.get("cut_after_bytes")
        self.cut_after_seconds = spec.get("cut_after_seconds")
        self.cut_mode = spec.get("cut_mode", "abort")
        if self.cut_mode not in ("abort", "end"):
            raise ValueError("cut_mode must be abort or end")
        self.spec = spec

    def matches(self, method, target):
        return (self.remaining != 0 and self.method.fullmatch(method) is not None
                and self.path.search(target) is not None)


class Request:
    def __init__(self, method, target, version, headers, body):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # list of (name, value), original case
        self.body = body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


class ClientGone(Exception):
    pass


async def read_headers(reader):
    headers = []
    while True:
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        line = line.rstrip(b"\r\n")
        if not line:
            return headers
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))


async def read_chunked(reader):
    """Reads a whole chunked body (requests are small)."""
    body = bytearray()
    while True:
        size_line = await reader.readline()
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await read_headers(reader)  # trailers
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def read_request(reader):
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3:
        raise ValueError("bad request line %r" % line)
    method, target, version = parts
    headers = await read_headers(reader)
    req = Request(method, target, version, headers, b"")
    te = (req.header("transfer-encoding") or "").lower()
    if "chunked" in te:
        req.body = await read_chunked(reader)
    else:
        length = int(req.header("content-length") or 0)
        if length:
            req.body = await reader.readexactly(length)
    return req


def status_body(code, reason, message, retry_after):
    status = {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    }
    if retry_after is not None:
        status["details"] = {"retryAfterSeconds": int(retry_after)}
    return json.dumps(status).encode()


class Proxy:
    def __init__(self, args, upstream, ssl_ctx):
        self.args = args
        self.upstream = upstream  # urllib.parse result
        self.ssl_ctx = ssl_ctx
        self.rules = []
        self.log = []  # one dict per proxied request
        # id -> (client writer, upstream writer, log entry) of each response being forwarded
        self.active = {}

    # --- the control API -------------------------------------------------------

    async def control(self, req, writer):
        path = urllib.parse.urlsplit(req.target).path
        try:
            if path == "/__faults/rules" and req.method == "POST":
                spec = json.loads(req.body or b"null")
                specs = spec if isinstance(spec, list) else [spec]
                rules = [Rule(s) for s in specs]
                self.rules.extend(rules)
                for r in rules:
                    log(False, self.args, "rule %d: %s" % (r.id, json.dumps(r.spec)))
                return await self.answer(writer, 200, {"ids": [r.id for r in rules]})
            if path == "/__faults/rules" and req.method == "DELETE":
                self.rules.clear()
                return await self.answer(writer, 200, {})
            if path == "/__faults/reset" and req.method == "POST":
                self.rules.clear()
                self.log.clear()
                return await self.answer(writer, 200, {})
            if path == "/__faults/cut" and req.method == "POST":
                active = list(self.active.values())
                for client_writer, upstream_writer, entry in active:
                    entry["cut"] = "control"
                    # Both ends: the relay then sees the upstream end and finishes.
                    client_writer.transport.abort()
                    upstream_writer.transport.abort()
                log(True, self.args, "cut %d open responses" % len(active))
                return await self.answer(writer, 200, {"cut": len(active)})
            if path == "/__faults/stats" and req.method == "GET":
                return await self.answer(writer, 200,
                                         {"total": len(self.log), "requests": self.log})
            return await self.answer(writer, 404, {"error": "no such control endpoint"})
        except (ValueError, re.error) as e:
            return await self.answer(writer, 400, {"error": str(e)})

    async def answer(self, writer, code, obj, extra_headers=(), body=None):
        data = body if body is not None else json.dumps(obj).encode()
        head = ["HTTP/1.1 %d %s" % (code, PHRASES.get(code, "Status")),
                "Content-Type: application/json",
                "Content-Length: %d" % len(data)]
        head += ["%s: %s" % kv for kv in extra_headers]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        await writer.drain()
        return True

    # --- proxying --------------------------------------------------------------

    def match(self, req):
        for rule in self.rules:
            if rule.matches(req.method, req.target):
                if rule.remaining > 0:
                    rule.remaining -= 1
                return rule
        return None

    async def serve(self, req, reader, writer):
        """Answers one request; returns whether the client connection stays usable."""
        if req.target.startswith("/__faults/"):
            return await self.control(req, writer)
        rule = self.match(req)
        entry = {"method": req.method, "target": req.target, "status": 0,
                 "rule": rule.id if rule else None, "bytes": 0, "time": time.time()}
        self.log.append(entry)
        if rule is not None and rule.latency > 0:
            await asyncio.sleep(rule.latency)
        if rule is not None and rule.status is not None:
            code = int(rule.status)
            reason = rule.reason or REASONS.get(code, "Unknown")
            message = rule.message or ("faultproxy: injected %d for %s %s" %
                                       (code, req.method, req.target))
            extra = []
            if rule.retry_after is not None:
                extra.append(("Retry-After", str(int(rule.retry_after))))
            entry["status"] = code
            log(True, self.args, "%s %s -> injected %d (rule %d)" %
                (req.method, req.target, code, rule.id))
            return await self.answer(writer, code, None, extra,
                                     status_body(code, reason, message, rule.retry_after))
        return await self.forward(req, reader, writer, rule, entry)

    async def forward(self, req, reader, writer, rule, entry):
        host = self.upstream.hostname
        port = self.upstream.port or 443
        try:
            up_reader, up_writer = await asyncio.open_connection(
                host, port, ssl=self.ssl_ctx, server_hostname=host)
        except OSError as e:
            entry["status"] = 502
            log(False, self.args, "upstream %s:%d: %s" % (host, port, e))
            return await self.answer(writer, 502, None, (),
                                     status_body(502, "InternalError", "faultproxy: %s" % e, None))
        try:
            return await self.relay(req, reader, writer, up_reader, up_writer, rule, entry)
        finally:
            up_writer.close()

    async def relay(self, req, reader, writer, up_reader, up_writer, rule, entry):
        head = ["%s %s HTTP/1.1" % (req.method, req.target),
                "Host: %s" % self.upstream.netloc, "Connection: close"]
        head += ["%s: %s" % (k, v) for k, v in req.headers if k.lower() not in HOP_BY_HOP]
        if req.body or req.method in ("POST", "PUT", "PATCH"):
            head.append("Content-Length: %d" % len(req.body))
        up_writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + req.body)
        await up_writer.drain()

        status_line = await up_reader.readline()
        if not status_line:
            raise ConnectionError("upstream closed before answering")
        code = int(status_line.split(b" ")[1])
        entry["status"] = code
        up_headers = await read_headers(up_reader)
        lower = {k.lower(): v for k, v in up_headers}
        chunked = "chunked" in lower.get("transfer-encoding", "").lower()
        length = None if chunked else lower.get("content-length")
        no_body = req.method == "HEAD" or code in (204, 304) or 100 <= code < 200
        cutting = rule is not None and (rule.cut_after_bytes is not None or
                                        rule.cut_after_seconds is not None)
        # Pass a Content-Length body through as such unless it may be cut short;
        # everything else goes to the client chunked, one chunk per piece received.
        to_client_chunked = not no_body and (length is None or cutting)
        out = ["HTTP/1.1 %s" % status_line.decode("latin-1").split(" ", 1)[1].rstrip("\r\n")]
        out += ["%s: %s" % (k, v) for k, v in up_headers if k.lower() not in HOP_BY_HOP]
        if no_body:
            pass
        elif to_client_chunked:
            out.append("Transfer-Encoding: chunked")
        else:
            out.append("Content-Length: %s" % length)
        keep_alive = (req.header("connection") or "").lower() != "close"
        out.append("Connection: %s" % ("keep-alive" if keep_alive else "close"))
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        if no_body:
            return keep_alive

        deadline = None
        if rule is not None and rule.cut_after_seconds is not None:
            deadline = time.monotonic() + float(rule.cut_after_seconds)
        budget = None if rule is None or rule.cut_after_bytes is None else int(rule.cut_after_bytes)

        async def pieces():
            """Yields the upstream body in the pieces it arrives in."""
            if chunked:
                while True:
                    size_line = await up_reader.readline()
                    if not size_line:
                        # Dropped upstream: drop the client too (handle() closes it
                        # without ending the chunked body).
                        raise ConnectionError("upstream dropped the response")
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        await read_headers(up_reader)
                        return
                    data = await up_reader.readexactly(size)
                    await up_reader.readexactly(2)
                    yield data
            elif length is not None:
                left = int(length)
                while left > 0:
                    data = await up_reader.read(min(left, 64 * 1024))
                    if not data:
                        raise ConnectionError("upstream dropped the response")
                    left -= len(data)
                    yield data
            else:
                while True:
                    data = await up_reader.read(64 * 1024)
                    if not data:
                        return
                    yield data

        def send(data):
            entry["bytes"] += len(data)
            if to_client_chunked:
                writer.write(b"%x\r\n" % len(data) + data + b"\r\n")
            else:
                writer.write(data)

        async def cut(why):
            log(True, self.args, "%s %s: cut after %d bytes (%s, rule %d, %s)" %
                (req.method, req.target, entry["bytes"], why, rule.id, rule.cut_mode))
            entry["cut"] = why
            if rule.cut_mode == "end" and to_client_chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return keep_alive
            writer.transport.abort()
            return False

        it = pieces().__aiter__()
        # While a stream (a watch) is open the client sends nothing; reading from it
        # tells us when it has gone, so the upstream watch is not kept open for nobody.
        streaming = length is None
        gone = asyncio.ensure_future(reader.read(1)) if streaming else None
        self.active[id(entry)] = (writer, up_writer, entry)
        try:
            while True:
                nxt = asyncio.ensure_future(it.__anext__())
                waits = {nxt} if gone is None else {nxt, gone}
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait(waits, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    if gone is not None and gone in done:
                        log(True, self.args,
                            "%s %s: the client went away" % (req.method, req.target))
                        return False
                    return await cut("time")
                try:
                    data = nxt.result()
                except StopAsyncIteration:
                    break
                if budget is not None and entry["bytes"] + len(data) >= budget:
                    part = data[:budget - entry["bytes"]]
                    if part:
                        send(part)
                    return await cut("bytes")
                send(data)
                await writer.drain()
        finally:
            self.active.pop(id(entry), None)
            if gone is not None and not gone.done():
                gone.cancel()
                # Let the cancelled read let go of the reader before the next request.
                await asyncio.gather(gone, return_exceptions=True)
        if to_client_chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep_alive

    async def handle(self, reader, writer):
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    break
                if not await self.serve(req, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, ValueError) as e:
            log(True, self.args, "connection ended: %r" % (e,))
        except asyncio.CancelledError:
            pass  # shutting down
        finally:
            writer.close()


# --- configuration -----------------------------------------------------------------


def read_kubeconfig(path):
    """The first server, CA and client credential entries of a simple kubeconfig."""
    keys = ("server", "certificate-authority", "certificate-authority-data",
            "client-certificate", "client-certificate-data", "client-key", "client-key-data")
    found = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\s*(?:-\s+)?([A-Za-z-]+):\s*(\S.*?)\s*$", line)
            if m and m.group(1) in keys and m.group(1) not in found:
                found[m.group(1)] = m.group(2).strip("'\"")
    base = os.path.dirname(os.path.abspath(path))
    for k in ("certificate-authority", "client-certificate", "client-key"):
        if k in found and not os.path.isabs(found[k]):
            found[k] = os.path.join(base, found[k])
    return found


def file_or_data(cfg, key, tmpdir):
    if key in cfg:
        return cfg[key]
    if key + "-data" in cfg:
        out = os.path.join(tmpdir, key)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(cfg[key + "-data"]))
        return out
    return None


def write_proxy_kubeconfig(path, port):
    text = """apiVersion: v1
kind: Config
clusters:
- name: faultproxy
  cluster:
    server: http://127.0.0.1:%d
contexts:
- name: faultproxy
  context: {cluster: faultproxy, namespace: default}
current-context: faultproxy
""" % port
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


async def main_async(args):
    tmpdir = tempfile.mkdtemp(prefix="faultproxy-")
    try:
        cfg = read_kubeconfig(args.kubeconfig) if args.kubeconfig else {}
        server = args.server or cfg.get("server")
        if not server:
            raise SystemExit("faultproxy: no API server (give --kubeconfig or --server)")
        upstream = urllib.parse.urlsplit(server)
        if upstream.scheme != "https":
            raise SystemExit("faultproxy: the upstream must be https://, got %s" % server)
        ca = args.ca or file_or_data(cfg, "certificate-authority", tmpdir)
        cert = args.cert or file_or_data(cfg, "client-certificate", tmpdir)
        key = args.key or file_or_data(cfg, "client-key", tmpdir)
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["http/1.1"])
        if cert and key:
            ctx.load_cert_chain(cert, key)

        proxy = Proxy(args, upstream, ctx)
        for spec in args.rule:
            proxy.rules.append(Rule(json.loads(spec)))
        server_obj = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port)
        port = server_obj.sockets[0].getsockname()[1]
        if args.write_kubeconfig:
            write_proxy_kubeconfig(args.write_kubeconfig, port)
        print("faultproxy listening on 127.0.0.1:%d" % port, flush=True)
        log(True, args, "forwarding to %s" % server)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server_obj:
            await stop.wait()
    finally:
        for name in os.listdir(tmpdir):
            os.unlink(os.path.join(tmpdir, name))
        os.rmdir(tmpdir)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kubeconfig", help="where the API server and credentials come from")
    p.add_argument("--server", help="upstream https://host:port (overrides the kubeconfig)")
    p.add_argument("--ca", help="CA file (overrides the kubeconfig)")
    p.add_argument("--cert", help="client certificate file (overrides the kubeconfig)")
    p.add_argument("--key", help="client key file (overrides the kubeconfig)")
    p.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1 (0: any)")
    p.add_argument("--write-kubeconfig", help="write a kubeconfig for the proxy here")
    p.add_argument("--rule", action="append", default=[], help="a rule as JSON (repeatable)")
    p.add_argument("--verbose", action="store_true", help="log every fault and cut")
    args = p.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
