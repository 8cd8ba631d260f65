#!/usr/bin/python3
"""Integration test of tosec-nfv-proxy (eval/nfv/), the NFV baseline of eval/paper/run.

Loopback only (127.0.0.1, kernel-chosen ports), no root needed:
  * bad arguments exit 2 with a message that names the problem;
  * bytes are relayed intact in both directions at once (1 MiB each way, half-close);
  * a chain of two inspecting proxies (ids, then acl) relays an HTTP exchange;
  * the ids rule sid 1000001 ("/cgi-bin/evil-payload.sh", also split over two sends) resets
    both sides: the client gets ECONNRESET, the server never sees the request; an EVE alert is
    written.

  nfv_proxy_test.py PROXY_BINARY RULES_DIR
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

TIMEOUT = 20  # seconds for any single socket operation or process start

FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


class Upstream:
    """A TCP server on 127.0.0.1: for one connection, sends `reply` (then half-closes) while it
    reads the client's bytes until EOF (or reset), then closes. Records (bytes received, how it
    ended). reply=None: sends nothing and keeps its side open until the client's EOF."""

    def __init__(self, reply=b""):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.results = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            self.done.set()
            return
        conn.settimeout(TIMEOUT)
        sender = threading.Thread(target=self._send, args=(conn,), daemon=True)
        sender.start()
        got = bytearray()
        end = "eof"
        try:
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                got += b
        except ConnectionResetError:
            end = "reset"
        except OSError as e:
            end = "error %s" % e
        sender.join(TIMEOUT)
        conn.close()
        self.results.append((bytes(got), end))
        self.done.set()

    def _send(self, conn):
        if self.reply is None:
            return
        try:
            if self.reply:
                conn.sendall(self.reply)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.sock.close()


class ProxyProc:
    def __init__(self, binary, args):
        self.p = subprocess.Popen([binary] + args, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.ports = []
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            line = self.p.stdout.readline()
            if not line:
                break
            if line.startswith("listening "):
                self.ports.append(int(line.split()[1].rsplit(":", 1)[1]))
            if line.strip() == "tosec-nfv-proxy: ready":
                return
        self.stop()
        raise RuntimeError("proxy did not get ready: %s" % self.p.stderr.read())

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
        try:
            _, err = self.p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            _, err = self.p.communicate()
        return self.p.returncode, err


def bad_args(binary, rules):
    cases = [
        ([], "at least one --forward"),
        (["--forward", "127.0.0.1:80"], "expected LISTEN=NEXT"),
        (["--forward", "127.0.0.1:0=127.0.0.1:70000"], "not in [1, 65535]"),
        (["--forward", "localhost:0=127.0.0.1:80"], "not a numeric IPv4 or IPv6 address"),
        (["--forward", "127.0.0.1:0=127.0.0.1:80", "--engine", "ids"], "needs --rules"),
        (["--forward", "127.0.0.1:0=127.0.0.1:80", "--rules", rules + "/ids.rules"],
         "need --engine"),
        (["--forward", "127.0.0.1:0=127.0.0.1:80", "--engine", "nosuch", "--rules", "x"],
         "no engine 'nosuch'"),
        (["--forward", "127.0.0.1:0=127.0.0.1:80", "--engine", "ids", "--rules",
          "/nonexistent/ids.rules"], "/nonexistent/ids.rules"),
        (["--forward", "127.0.0.1:0=127.0.0.1:80", "--mode", "loud"], "expected prevent or detect"),
        (["--forward", "127.0.0.1:0=127.0.0.1:80", "--bogus"], "--bogus"),
        (["--forward", "127.0.0.1:0=127.0.0.1:80", "extra"], "unexpected argument 'extra'"),
    ]
    for args, want in cases:
        r = subprocess.run([binary] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=TIMEOUT)
        check(r.returncode == 2 and want in r.stderr,
              "bad arguments %s: exit 2 naming %r (got %d: %s)"
              % (args, want, r.returncode, r.stderr.strip()[:200]))
    # A listen address that is taken: a clear bind error.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    r = subprocess.run([binary, "--forward", "127.0.0.1:%d=127.0.0.1:80" % port],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
    s.close()
    check(r.returncode == 2 and "bind(127.0.0.1:%d)" % port in r.stderr,
          "listen address in use: exit 2 naming bind(127.0.0.1:%d) (got %d: %s)"
          % (port, r.returncode, r.stderr.strip()[:200]))


def relay_both_ways(binary, extra, label):
    c2s = os.urandom(1 << 20)
    s2c = os.urandom(1 << 20)
    up = Upstream(reply=s2c)
    px = ProxyProc(binary, ["--forward", "127.0.0.1:0=127.0.0.1:%d" % up.port] + extra)
    try:
        c = socket.create_connection(("127.0.0.1", px.ports[0]), timeout=TIMEOUT)
        got = bytearray()

        def reader():
            while True:
                b = c.recv(65536)
                if not b:
                    return
                got.extend(b)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        c.sendall(c2s)
        c.shutdown(socket.SHUT_WR)
        t.join(TIMEOUT)
        c.close()
        up.done.wait(TIMEOUT)
        check(hashlib.sha256(bytes(got)).digest() == hashlib.sha256(s2c).digest(),
              "%s: 1 MiB server -> client intact (got %d bytes)" % (label, len(got)))
        ok = bool(up.results) and up.results[0][0] == c2s and up.results[0][1] == "eof"
        check(ok, "%s: 1 MiB client -> server intact, then EOF (got %s)"
              % (label, (len(up.results[0][0]), up.results[0][1]) if up.results else "nothing"))
    finally:
        rc, err = px.stop()
        up.close()
    check(rc == 0 and "1 connections" in err, "%s: clean exit on SIGTERM with counters (%d: %s)"
          % (label, rc, err.strip().splitlines()[-1] if err.strip() else ""))


def http_two_proxies(binary, rules):
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    up = Upstream(reply=reply)
    p2 = ProxyProc(binary, ["--forward", "127.0.0.1:0=127.0.0.1:%d" % up.port, "--engine", "acl",
                            "--rules", rules + "/acl.rules", "--name", "acl"])
    p1 = ProxyProc(binary, ["--forward", "127.0.0.1:0=127.0.0.1:%d" % p2.ports[0], "--engine",
                            "ids", "--rules", rules + "/ids.rules", "--name", "ids"])
    req = b"GET /index.html HTTP/1.1\r\nHost: example.test\r\n\r\n"
    try:
        c = socket.create_connection(("127.0.0.1", p1.ports[0]), timeout=TIMEOUT)
        c.sendall(req)
        c.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += b
        c.close()
        up.done.wait(TIMEOUT)
        check(bytes(got) == reply, "ids -> acl chain: benign HTTP response relayed")
        check(bool(up.results) and up.results[0][0] == req,
              "ids -> acl chain: benign HTTP request relayed")
    finally:
        p1.stop()
        p2.stop()
        up.close()


def attack_blocked(binary, rules, split):
    label = "attack %s" % ("split over two sends" if split else "in one send")
    up = Upstream(reply=None)  # its FIN must not reach the client before the verdict
    with tempfile.TemporaryDirectory() as tmp:
        eve = os.path.join(tmp, "eve.json")
        px = ProxyProc(binary, ["--forward", "127.0.0.1:0=127.0.0.1:%d" % up.port, "--engine",
                                "ids", "--rules", rules + "/ids.rules", "--name", "ids-nfv",
                                "--alert-log", eve])
        req = b"GET /cgi-bin/evil-payload.sh HTTP/1.1\r\nHost: example.test\r\n\r\n"
        outcome = "nothing"
        try:
            c = socket.create_connection(("127.0.0.1", px.ports[0]), timeout=TIMEOUT)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                if split:
                    c.sendall(req[:14])  # "GET /cgi-bin/e"
                    time.sleep(0.2)
                    c.sendall(req[14:])
                else:
                    c.sendall(req)
                b = c.recv(100)
                outcome = "eof" if not b else "data %r" % b
            except ConnectionResetError:
                outcome = "reset"
            except BrokenPipeError:
                outcome = "reset"
            c.close()
            up.done.wait(TIMEOUT)
            check(outcome == "reset", "%s: client gets ECONNRESET (got %s)" % (label, outcome))
            got = up.results[0] if up.results else (b"", "none")
            check(b"evil-payload" not in got[0] and got[1] in ("reset", "eof"),
                  "%s: server never sees the request, connection ends (%d bytes, %s)"
                  % (label, len(got[0]), got[1]))
        finally:
            rc, err = px.stop()
            up.close()
        check("1 blocked" in err, "%s: proxy counts the block (%s)"
              % (label, err.strip().splitlines()[-1] if err.strip() else ""))
        lines = open(eve).read().splitlines() if os.path.exists(eve) else []
        alerts = [json.loads(l) for l in lines]
        check(any(a.get("alert", {}).get("signature_id") == 1000001 and
                  a["alert"].get("action") == "blocked" and a.get("svm") == "ids-nfv"
                  for a in alerts), "%s: EVE alert sid 1000001 blocked (%s)" % (label, lines[:1]))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, rules = sys.argv[1], sys.argv[2]
    bad_args(binary, rules)
    relay_both_ways(binary, [], "plain relay")
    relay_both_ways(binary, ["--engine", "ids", "--rules", rules + "/ids.rules"], "ids relay")
    http_two_proxies(binary, rules)
    attack_blocked(binary, rules, split=False)
    attack_blocked(binary, rules, split=True)
    if FAILURES:
        print("FAIL: %d check(s) failed" % len(FAILURES))
        return 1
    print("PASS: tosec-nfv-proxy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
