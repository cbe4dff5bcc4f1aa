"""The program the lab runs inside a pod namespace: ``python -m calico_accountant_cli.lab.probe``.

It exists because a Python 3.11 process cannot enter a network namespace by itself;
``ip netns exec NS python -m calico_accountant_cli.lab.probe ...`` runs it inside one.
Subcommands (each prints one JSON line on stdout):

``listen --family F --port P [--port P ...]``
    Accept TCP connections on every port and close them at once.  Prints ``{"ready": [...]}``
    once listening; runs until SIGTERM.
``connect --dest IP --port P --count N --source-port S --timeout T``
    N TCP connection attempts, all at once, from source ports S..S+N-1 (so each attempt is
    a new 4-tuple, hence a new conntrack flow), each a non-blocking ``connect``.  Sockets
    still in SYN_SENT at the deadline are closed, which sends nothing.  With T below the
    kernel's 1 s initial SYN retransmission timeout, each attempt sends exactly one SYN.
``ping --dest IP --count N --ident I --timeout T``
    N ICMP echo requests from a raw socket, one packet each, with identifiers I..I+N-1
    (so each is a new conntrack flow), then waits for the replies until T.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from types import FrameType

__all__ = ["main"]


def _family_of(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _listen(ports: Sequence[int], family: int) -> int:
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    wildcard = "::" if family == 6 else "0.0.0.0"
    selector = selectors.DefaultSelector()
    listeners = []
    for port in ports:
        listener = socket.socket(af, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == 6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind((wildcard, port))
        listener.listen(4096)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ)
        listeners.append(listener)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(json.dumps({"ready": [s.getsockname()[1] for s in listeners]}), flush=True)
    accepted = 0
    while True:
        for key, _ in selector.select():
            listening = key.fileobj
            assert isinstance(listening, socket.socket)
            try:
                connection, _peer = listening.accept()
            except BlockingIOError:
                continue
            connection.close()
            accepted += 1


def _connect(dest: str, port: int, count: int, source_port: int, timeout: float) -> dict[str, object]:
    af = _family_of(dest)
    selector = selectors.DefaultSelector()
    sockets: list[socket.socket] = []
    outcome: dict[str, int] = {"connected": 0, "refused": 0, "timed_out": 0, "other_error": 0}
    errors: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        for index in range(count):
            sock = socket.socket(af, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setblocking(False)
            sock.bind(("::" if af == socket.AF_INET6 else "0.0.0.0", source_port + index))
            code = sock.connect_ex((dest, port))
            if code in (0, errno.EINPROGRESS):
                selector.register(sock, selectors.EVENT_WRITE)
            else:
                outcome["other_error"] += 1
                name = errno.errorcode.get(code, str(code))
                errors[name] = errors.get(name, 0) + 1
        pending = len(selector.get_map())
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, _ in selector.select(remaining):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                selector.unregister(ready)
                pending -= 1
                code = ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    outcome["connected"] += 1
                elif code == errno.ECONNREFUSED:
                    outcome["refused"] += 1
                else:
                    outcome["other_error"] += 1
                    name = errno.errorcode.get(code, str(code))
                    errors[name] = errors.get(name, 0) + 1
        outcome["timed_out"] = pending
    finally:
        for sock in sockets:
            sock.close()
    return {"attempts": count, **outcome, "errors": errors}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ping(dest: str, count: int, ident: int, timeout: float) -> dict[str, object]:
    af = _family_of(dest)
    if af == socket.AF_INET6:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        request_type, reply_type = 128, 129
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        request_type, reply_type = 8, 0
    payload = b"calico-accountant-lab"
    wanted = {(ident + index) & 0xFFFF for index in range(count)}
    answered: set[int] = set()
    with sock:
        sock.setblocking(False)
        for index in range(count):
            identifier = (ident + index) & 0xFFFF
            header = struct.pack("!BBHHH", request_type, 0, 0, identifier, 1)
            if af == socket.AF_INET:  # the kernel fills the ICMPv6 checksum itself
                header = struct.pack("!BBHHH", request_type, 0, _checksum(header + payload), identifier, 1)
            sock.sendto(header + payload, (dest, 0))
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while answered != wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            while True:
                try:
                    packet = sock.recv(65535)
                except BlockingIOError:
                    break
                if af == socket.AF_INET:
                    packet = packet[(packet[0] & 0x0F) * 4 :]
                if len(packet) >= 8:
                    kind, _code, _sum, identifier, _seq = struct.unpack("!BBHHH", packet[:8])
                    if kind == reply_type and identifier in wanted:
                        answered.add(identifier)
    return {"sent": count, "answered": len(answered)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calico_accountant_cli.lab.probe")
    commands = parser.add_subparsers(dest="command", required=True)
    listen = commands.add_parser("listen")
    listen.add_argument("--family", type=int, choices=(4, 6), default=4)
    listen.add_argument("--port", type=int, action="append", required=True)
    connect = commands.add_parser("connect")
    connect.add_argument("--dest", required=True)
    connect.add_argument("--port", type=int, required=True)
    connect.add_argument("--count", type=int, required=True)
    connect.add_argument("--source-port", type=int, required=True)
    connect.add_argument("--timeout", type=float, default=0.5)
    ping = commands.add_parser("ping")
    ping.add_argument("--dest", required=True)
    ping.add_argument("--count", type=int, required=True)
    ping.add_argument("--ident", type=int, required=True)
    ping.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.command == "listen":
        return _listen(list(args.port), int(args.family))
    if args.command == "connect":
        result = _connect(args.dest, args.port, args.count, args.source_port, args.timeout)
    else:
        result = _ping(args.dest, args.count, args.ident, args.timeout)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
