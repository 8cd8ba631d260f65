#!/usr/bin/env python3
"""A stand-in for tosec-tovm in the CLI's tests (until and besides the real TOE).

Accepts tosec-tovm's command line: one group per guest (each --guest NAME opens a group that
the flags after it belong to; docs/tovm.md), listens on every guest's --status and --sidecar,
prints the ready line and serves a canned status JSON (naming the guest and its worker, i %
--workers) to every status connection. FAKE_TOVM_MODE selects misbehaviour: "ready" (default),
"fail" (exit 3 before ready), "silent" (never ready), "die-after-ready" (exit 4 one second
after ready). FAKE_TOVM_ARGS_FILE, if set, receives the argv (one per line).
"""
import json
import os
import select
import signal
import socket
import sys
import time

PER_GUEST = ("ivshmem", "sidecar", "status", "inspect-ivshmem", "topology", "alert-log")
NUMERIC = ("lanes", "max-sockets", "ring-slots", "socket-rx-entries", "chunk-size",
           "tx-chunks-per-lane", "rx-chunks", "workers", "spin-ns")


def parse(argv):
    guests, workers = [], 1
    i = 0
    while i < len(argv):
        flag = argv[i]
        if not flag.startswith("--") or i + 1 >= len(argv):
            sys.exit("fake tosec-tovm: bad argument %r" % flag)
        name, value = flag[2:], argv[i + 1]
        i += 2
        if name == "guest":
            guests.append({"guest": value})
        elif name in PER_GUEST:
            if not guests:
                sys.exit("fake tosec-tovm: --%s must follow the --guest it belongs to" % name)
            guests[-1][name] = value
        elif name in NUMERIC:
            int(value)
            if name == "workers":
                workers = int(value)
        elif name != "log-level":
            sys.exit("fake tosec-tovm: unknown option --%s" % name)
    if not guests:
        sys.exit("fake tosec-tovm: --guest is required")
    for g in guests:
        for need in ("ivshmem", "sidecar", "status"):
            if need not in g:
                sys.exit("fake tosec-tovm: --guest %s: --%s is required" % (g["guest"], need))
    return guests, workers


guests, workers = parse(sys.argv[1:])
if os.environ.get("FAKE_TOVM_ARGS_FILE"):
    with open(os.environ["FAKE_TOVM_ARGS_FILE"], "w") as f:
        f.write("\n".join(sys.argv[1:]) + "\n")

mode = os.environ.get("FAKE_TOVM_MODE", "ready")
print("fake tosec-tovm for guest %s starting" % ",".join(g["guest"] for g in guests), flush=True)
if mode == "fail":
    print("fake tosec-tovm: cannot attach region (simulated)", file=sys.stderr, flush=True)
    sys.exit(3)

start = time.time()
listeners = {}
for index, g in enumerate(guests):
    status = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    status.bind(g["status"])
    status.listen(8)
    sidecar = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sidecar.bind(g["sidecar"])
    sidecar.listen(8)
    listeners[status] = (index, g)
    g["_sidecar"] = sidecar


def stop(*_):
    for g in guests:
        for key in ("status", "sidecar"):
            try:
                os.unlink(g[key])
            except OSError:
                pass
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)

if mode == "silent":
    while True:
        time.sleep(1)

print("tosec-tovm: ready", flush=True)
if mode == "die-after-ready":
    time.sleep(1)
    sys.exit(4)

while True:
    ready, _, _ = select.select(list(listeners), [], [])
    for status in ready:
        index, g = listeners[status]
        conn, _ = status.accept()
        doc = {
            "guest": g["guest"], "pid": os.getpid(), "worker": index % workers,
            "uptime_s": int(time.time() - start),
            "lanes": [{"lane": 0, "pid": 4242}],
            "sockets": {"open": 1, "connecting": 0, "connected": 2, "listening": 1, "closing": 0},
            "bytes_from_guest": 1000, "bytes_to_guest": 2048, "bytes_tx_wire": 1000,
            "bytes_rx_wire": 2048, "rx_backpressure_events": 0, "bad_descriptors": 0,
            "guests_reclaimed": 0,
        }
        conn.sendall(json.dumps(doc).encode())
        conn.close()
