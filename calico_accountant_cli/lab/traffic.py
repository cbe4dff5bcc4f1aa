"""Real traffic between lab pods, with packet counts that are exact by construction.

What a Calico policy counter counts is *new-flow packets*: conntrack accepts established
traffic at the top of every endpoint chain, so only packets of flows without a reply reach
the policy jumps.  To be able to say "the deny policy must show exactly D packets", every
probe here sends exactly one new-flow packet:

* **TCP** (:func:`connect`): each attempt is a non-blocking ``connect`` from its own source
  port (a fresh 4-tuple, hence a fresh conntrack flow) that sends one SYN.  Accepted: the
  SYN-ACK or RST comes back as a *reply* (conntrack ESTABLISHED), and the client's ACK/FIN
  are established too, so none of them reach a policy.  Denied: nothing comes back; the
  socket is closed while still in SYN_SENT, which sends nothing.  Pass a ``timeout`` below
  the kernel's 1 s initial SYN retransmission timeout and the kernel never retransmits.
  What makes the count exact *regardless of timing* (a stalled machine, a slow reply) is
  the send guard, :func:`install_send_guard`: a rule in the *pod's own* OUTPUT chain that
  drops any SYN whose conntrack entry is already confirmed (``-m conntrack --ctstatus
  CONFIRMED``).  In OUTPUT the first SYN of a flow still has an unconfirmed entry (entries
  are confirmed in POSTROUTING); a retransmitted SYN finds its entry confirmed.  So a
  retransmission never reaches the node.  (``-m connbytes --connbytes 2:`` does *not* work
  for this: observed on Linux 6.18, a retransmitted SYN does not advance the flow's packet
  count.)  The guard also counts the first SYNs it let through (:func:`guard_counts`), an
  independent check of what was sent.
* **ICMP** (:func:`ping`): one echo request per probe from a raw socket, each with its own
  identifier (a fresh conntrack flow); the reply is conntrack ESTABLISHED.

The guard lives in the pod namespaces only; the node namespace holds nothing but the
ruleset under test.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import calico_accountant
from calico_accountant_cli.lab.iptables import Backend, append_rules, save
from calico_accountant_cli.lab.netns import LabNetwork, LabProcess, netns_exec_argv, run_command
from calico_accountant_cli.lab.topology import Node, Pod

__all__ = [
    "ConnectResult",
    "GuardCounts",
    "Listener",
    "PingResult",
    "connect",
    "guard_counts",
    "install_send_guard",
    "ping",
    "prepare_pods",
    "start_listener",
]

_GUARD_DROP = "lab: drop SYN retransmissions"
_GUARD_SYN = "lab: first SYNs"
_GUARD_ECHO = "lab: echo requests"

_FIRST_SOURCE_PORT = 20_000
_LAST_SOURCE_PORT = 60_999


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """Outcome of a batch of connection attempts; ``attempts`` SYNs were sent."""

    attempts: int
    connected: int
    refused: int
    timed_out: int
    other_error: int


@dataclass(frozen=True, slots=True)
class PingResult:
    """Outcome of a batch of echo requests; ``sent`` requests were sent."""

    sent: int
    answered: int


@dataclass(frozen=True, slots=True)
class GuardCounts:
    """What the send guard of one pod saw, per family, since it was installed."""

    first_syns: int
    first_syn_bytes: int
    dropped_syn_retransmissions: int
    echo_requests: int
    echo_request_bytes: int


class _Allocator:
    """Hands out source ports / ICMP identifiers in turn, per source namespace.

    A value comes round again only after 41 000 others: long after its conntrack entry
    (at most 120 s for an unanswered SYN or a TIME_WAIT) and its client TIME_WAIT socket
    (60 s) are gone, unless a pod sends more than ~340 probes a second for minutes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}

    def take(self, namespace: str, count: int) -> int:
        if not 0 < count <= _LAST_SOURCE_PORT - _FIRST_SOURCE_PORT + 1:
            raise ValueError(f"cannot send {count} probes in one batch")
        with self._lock:
            first = self._next.get(namespace, _FIRST_SOURCE_PORT)
            if first + count - 1 > _LAST_SOURCE_PORT:
                first = _FIRST_SOURCE_PORT
            self._next[namespace] = first + count
            return first


_source_ports = _Allocator()
_icmp_idents = _Allocator()


def _probe_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "calico_accountant_cli.lab.probe", *args]


def _probe_env() -> dict[str, str]:
    """The environment of a probe: this interpreter must find this copy of the package."""
    root = str(Path(calico_accountant.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_probe(namespace: str, args: Sequence[str], timeout: float) -> dict[str, object]:
    output = run_command(
        netns_exec_argv(namespace, _probe_argv(*args)), timeout=timeout + 30, env=_probe_env()
    )
    result = json.loads(output.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def _as_int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an int from the probe, got {value!r}")
    return value


def install_send_guard(pod_netns: str, backend: Backend) -> None:
    """Add the one-SYN-per-attempt guard and the send counters to a pod's OUTPUT (v4 and v6)."""
    for family, echo in (
        (4, "-p icmp --icmp-type echo-request"),
        (6, "-p ipv6-icmp --icmpv6-type echo-request"),
    ):
        rules = [
            "-A OUTPUT -p tcp --syn -m conntrack --ctstatus CONFIRMED"
            f' -m comment --comment "{_GUARD_DROP}" -j DROP',
            f'-A OUTPUT -p tcp --syn -m comment --comment "{_GUARD_SYN}" -j ACCEPT',
            f'-A OUTPUT {echo} -m comment --comment "{_GUARD_ECHO}" -j ACCEPT',
        ]
        append_rules(pod_netns, [shlex.split(rule) for rule in rules], family=family, backend=backend)


def prepare_pods(node: Node, backend: Backend) -> None:
    """Install the send guard in every pod of ``node``."""
    for pod in node.pods:
        install_send_guard(pod.netns, backend)


_COUNTER_LINE = re.compile(r'^\[(\d+):(\d+)\] -A OUTPUT .*--comment "(lab: [^"]+)"')


def guard_counts(pod_netns: str, backend: Backend, family: int = 4) -> GuardCounts:
    """Read the guard's counters from the pod's OUTPUT chain."""
    counters: dict[str, tuple[int, int]] = {}
    for line in save(pod_netns, family=family, backend=backend).splitlines():
        match = _COUNTER_LINE.match(line)
        if match:
            counters[match.group(3)] = (int(match.group(1)), int(match.group(2)))
    missing = {_GUARD_DROP, _GUARD_SYN, _GUARD_ECHO} - counters.keys()
    if missing:
        raise RuntimeError(f"send guard not installed in {pod_netns} (family {family}): {sorted(missing)}")
    return GuardCounts(
        first_syns=counters[_GUARD_SYN][0],
        first_syn_bytes=counters[_GUARD_SYN][1],
        dropped_syn_retransmissions=counters[_GUARD_DROP][0],
        echo_requests=counters[_GUARD_ECHO][0],
        echo_request_bytes=counters[_GUARD_ECHO][1],
    )


def connect(source: Pod, dest: str, port: int, count: int, *, timeout: float = 1.0) -> ConnectResult:
    """``count`` TCP connection attempts from ``source`` to ``dest:port``: one SYN each.

    Attempts that are answered return at once; ``timeout`` is how long unanswered
    (denied) ones are given, so pass a short one when they are expected.
    """
    if count <= 0:
        return ConnectResult(0, 0, 0, 0, 0)
    first_port = _source_ports.take(source.netns, count)
    result = _run_probe(
        source.netns,
        [
            "connect",
            "--dest",
            dest,
            "--port",
            str(port),
            "--count",
            str(count),
            "--source-port",
            str(first_port),
            "--timeout",
            str(timeout),
        ],
        timeout,
    )
    return ConnectResult(
        attempts=_as_int(result["attempts"]),
        connected=_as_int(result["connected"]),
        refused=_as_int(result["refused"]),
        timed_out=_as_int(result["timed_out"]),
        other_error=_as_int(result["other_error"]),
    )


def ping(source: Pod, dest: str, count: int, *, timeout: float = 1.0) -> PingResult:
    """``count`` ICMP echo requests from ``source`` to ``dest``: one packet, one new flow each."""
    if count <= 0:
        return PingResult(0, 0)
    ident = _icmp_idents.take(source.netns, count)
    result = _run_probe(
        source.netns,
        ["ping", "--dest", dest, "--count", str(count), "--ident", str(ident), "--timeout", str(timeout)],
        timeout,
    )
    return PingResult(sent=_as_int(result["sent"]), answered=_as_int(result["answered"]))


@dataclass
class Listener:
    """A TCP listener inside a pod namespace; accepts and closes every connection."""

    pod: Pod
    ports: tuple[int, ...]
    family: int
    process: LabProcess
    lab: LabNetwork

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """Stop the listener (SIGTERM to its PID)."""
        self.process.stop()
        self.lab.forget(self.process)


def start_listener(
    lab: LabNetwork, pod: Pod, ports: Sequence[int], *, family: int = 4, ready_timeout: float = 30.0
) -> Listener:
    """Start a listener on ``ports`` in ``pod`` and wait until it is accepting."""
    argv = ["listen", "--family", str(family)]
    for port in ports:
        argv += ["--port", str(port)]
    process = lab.start(pod.netns, _probe_argv(*argv), env=_probe_env())
    assert process.popen.stdout is not None
    ready_to_read, _, _ = select.select([process.popen.stdout], [], [], ready_timeout)
    line = process.popen.stdout.readline() if ready_to_read else ""
    if not line:
        stderr = process.popen.stderr.read() if process.popen.stderr else ""
        process.stop()
        lab.forget(process)
        raise RuntimeError(f"listener in {pod.netns} did not start: {stderr.strip()}")
    ready = json.loads(line)
    return Listener(pod, tuple(int(port) for port in ready["ready"]), family, process, lab)
