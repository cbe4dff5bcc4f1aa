"""Reading a node's filter tables: run the save commands, parse, dodge the glitch.

The edge of the agent that touches the host.  Three concerns, kept apart:

* **Which commands.**  Felix programs either the legacy or the nft backend, and the
  other backend's tables hold no ``cali-`` chains, so reading the wrong one reports
  nothing.  :func:`choose_backend` decides the way felix's ``FELIX_IPTABLESBACKEND``
  does (``Auto``/``Legacy``/``NFT``); in ``Auto`` it looks at both backends' tables:
  kube-proxy's ``KUBE-IPTABLES-HINT``/``KUBE-KUBELET-CANARY`` chains first, then
  whichever has more ``cali-`` lines, then more rules; a tie goes to legacy, as felix's
  detection does.  Any command that prints a table can be configured instead
  (``cat node1.save``, ``ip netns exec n1 iptables-save -c -t filter``).
* **Running them.**  Each read runs every command (concurrently, each with a timeout,
  without a shell: ``shlex`` splitting), and fails as a whole if one fails, so a
  snapshot never silently lacks a table (which the aggregator would read as the
  counters vanishing).
* **The glitch.**  iptables occasionally returns a dump whose counters are all near
  zero and the next read is back to normal (the original calico-accountant dodged it
  with a MINIMUM_COUNTER).  Sending such a read would make the aggregator see a reset
  and then count everything again.  :func:`looks_like_glitch` recognises it against
  the previous read and :class:`NodeReader` re-reads at once: if the re-read is normal
  the glitch is dropped; if it is near zero too, the reset is real and is sent.
"""

from __future__ import annotations

import asyncio
import enum
import os
import re
import shlex
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from calico_accountant.records import CounterKey, CounterRecord, ParseResult
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.delta import index_records
from calico_accountant.wire.snapshots import SourceInfo

__all__ = [
    "DEFAULT_NEAR_ZERO_PACKETS",
    "Backend",
    "BackendEvidence",
    "CommandOutput",
    "NodeParser",
    "NodeRead",
    "NodeReader",
    "ReadError",
    "choose_backend",
    "dataplane_of",
    "default_commands",
    "detect_backend",
    "family_of",
    "gather_evidence",
    "looks_like_glitch",
    "run_command",
]

#: A counter at or below this many packets counts as "near zero" for the glitch check.
DEFAULT_NEAR_ZERO_PACKETS = 10


class ReadError(RuntimeError):
    """A read that cannot be used: a command failed, timed out or could not start."""


class Backend(enum.StrEnum):
    LEGACY = "legacy"
    NFT = "nft"


class NodeParser(Protocol):
    """What the reader needs of the parser (``node_agent.parsing.SteadyStateParser``)."""

    def parse(self, inputs: Sequence[tuple[str, str | bytes]]) -> ParseResult: ...


# --- backend choice (pure) -----------------------------------------------------------

_HINT_CHAINS = re.compile(rb"^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) ", re.MULTILINE)
_CALI_LINE = re.compile(rb"^(?::cali-|(?:\[\d+:\d+\] )?-A cali-)", re.MULTILINE)
_RULE_LINE = re.compile(rb"^(?:\[\d+:\d+\] )?-A ", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class BackendEvidence:
    """What one backend's full dump shows about whether felix programs it."""

    hint: bool
    """kube-proxy's hint/canary chains are there (kubelet and kube-proxy use this backend)."""
    cali_lines: int
    """Chain declarations and rules of ``cali-`` chains."""
    rules: int


def gather_evidence(dump: bytes) -> BackendEvidence:
    """Evidence from one backend's ``*-save`` output (all tables)."""
    return BackendEvidence(
        hint=bool(_HINT_CHAINS.search(dump)),
        cali_lines=len(_CALI_LINE.findall(dump)),
        rules=len(_RULE_LINE.findall(dump)),
    )


def choose_backend(setting: str, legacy: BackendEvidence | None, nft: BackendEvidence | None) -> Backend:
    """The backend to read, from ``FELIX_IPTABLESBACKEND``-style ``setting`` and, for
    ``auto``, each backend's evidence (None when that backend's tools are missing)."""
    normalized = setting.strip().lower()
    if normalized == "legacy":
        return Backend.LEGACY
    if normalized == "nft":
        return Backend.NFT
    if normalized not in ("", "auto"):
        raise ValueError(f"iptables backend must be Auto, Legacy or NFT, not {setting!r}")
    if legacy is None or nft is None:
        return Backend.NFT if legacy is None and nft is not None else Backend.LEGACY
    if nft.hint != legacy.hint:
        return Backend.NFT if nft.hint else Backend.LEGACY
    if nft.cali_lines != legacy.cali_lines:
        return Backend.NFT if nft.cali_lines > legacy.cali_lines else Backend.LEGACY
    return Backend.NFT if nft.rules > legacy.rules else Backend.LEGACY


def default_commands(
    backend: Backend, *, ipv6: bool = True, which: Callable[[str], str | None] = shutil.which
) -> list[str]:
    """The save commands for ``backend``, IPv4 and (when its tool exists) IPv6.

    Falls back to the plain ``iptables-save`` when the suffixed binary is absent (an
    image that ships only one backend)."""
    commands: list[str] = []
    for tool in ("iptables", "ip6tables") if ipv6 else ("iptables",):
        binary = f"{tool}-{backend.value}-save"
        if which(binary) is None:
            binary = f"{tool}-save"
            if which(binary) is None and tool == "ip6tables":
                continue
        commands.append(f"{binary} -c -t filter")
    return commands


# --- what printed a table (pure) ---------------------------------------------------

_HEADER = re.compile(
    rb"^# Generated by (ip6?tables)(-(?:legacy|nft))?-save v[\d.]+(?: \((\w+)\))?", re.MULTILINE
)


def dataplane_of(command: str, output: bytes) -> pb.Dataplane:
    """Which dataplane printed ``output``: libnftables JSON is felix's nftables mode
    (``NFTABLES``); an iptables header says its backend (``(nf_tables)``/``(legacy)``, or a
    ``-legacy``/``-nft`` tool name), else the command's tool name; a file or a headerless
    dump is ``DATAPLANE_OTHER``."""
    head = output[:256].lstrip()
    if head.startswith(b"{") and b'"nftables"' in head:
        return pb.NFTABLES
    match = _HEADER.search(output[:4096])
    if match:
        variant = (match.group(3) or b"").lower()
        tool = (match.group(2) or b"").lower()
        if variant == b"nf_tables" or tool == b"-nft":
            return pb.IPTABLES_NFT
        return pb.IPTABLES_LEGACY
    words = shlex.split(command) if command else []
    names = {os.path.basename(word) for word in words}
    if names & {"iptables-nft-save", "ip6tables-nft-save"}:
        return pb.IPTABLES_NFT
    if names & {"iptables-legacy-save", "ip6tables-legacy-save"}:
        return pb.IPTABLES_LEGACY
    return pb.DATAPLANE_OTHER


_NFT_FAMILY = re.compile(rb'"table": \{"family": "(ip6?)"')


def family_of(command: str, output: bytes) -> int:
    """4 or 6 from the header (an nft table's family) or the tool name; 0 when neither tells."""
    nft = _NFT_FAMILY.search(output[:4096])
    if nft:
        return 6 if nft.group(1) == b"ip6" else 4
    match = _HEADER.search(output[:4096])
    if match:
        return 6 if match.group(1) == b"ip6tables" else 4
    if "ip6tables" in command:
        return 6
    if "iptables" in command:
        return 4
    return 0


# --- the glitch (pure) ---------------------------------------------------------------


def looks_like_glitch(
    previous: Mapping[CounterKey, CounterRecord],
    current: Mapping[CounterKey, CounterRecord],
    near_zero_packets: int = DEFAULT_NEAR_ZERO_PACKETS,
) -> bool:
    """True when every counter that was above ``near_zero_packets`` in ``previous`` and
    is still there with the same rule ids has fallen to ``near_zero_packets`` or below.

    A counter whose rule ids changed was rewritten by felix: its reset is expected, not
    evidence of a glitch.  Needs at least one such counter to say anything."""
    witnesses = 0
    for key, before in previous.items():
        if before.packets <= near_zero_packets:
            continue
        after = current.get(key)
        if after is None or after.rule_ids != before.rule_ids:
            continue
        if after.packets > near_zero_packets:
            return False
        witnesses += 1
    return witnesses > 0


# --- running commands (I/O) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandOutput:
    command: str
    stdout: bytes
    seconds: float


async def run_command(command: str, timeout: float) -> CommandOutput:
    """Run one command (no shell) and return its output; :class:`ReadError` if it
    cannot start, exits non-zero, or outlives ``timeout`` (then it is killed)."""
    argv = shlex.split(command)
    if not argv:
        raise ReadError("empty command")
    started = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError as error:
        raise ReadError(f"{command!r} could not start: {error}") from error
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ReadError(f"{command!r} did not finish within {timeout:g} s") from None
    if process.returncode != 0:
        detail = stderr.decode("utf-8", "replace").strip().splitlines()
        raise ReadError(f"{command!r} exited with {process.returncode}: {' / '.join(detail[-3:])}")
    return CommandOutput(command=command, stdout=stdout, seconds=time.monotonic() - started)


async def detect_backend(setting: str, timeout: float = 30.0) -> Backend:
    """:func:`choose_backend` with evidence from running both backends' ``*-save``."""
    if setting.strip().lower() in ("legacy", "nft"):
        return choose_backend(setting, None, None)

    async def evidence(binary: str) -> BackendEvidence | None:
        if shutil.which(binary) is None:
            return None
        try:
            output = await run_command(binary, timeout)
        except ReadError:
            return None
        return gather_evidence(output.stdout)

    legacy, nft = await asyncio.gather(evidence("iptables-legacy-save"), evidence("iptables-nft-save"))
    return choose_backend(setting, legacy, nft)


# --- the reader ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeRead:
    """One usable read of all of a node's tables."""

    result: ParseResult
    records: Mapping[CounterKey, CounterRecord]
    sources: tuple[SourceInfo, ...]
    read_time: datetime
    seconds: float
    """Wall time of running the commands and parsing (both reads when re-read)."""
    reread: bool = False
    """A near-zero read was seen and this is the immediate re-read."""
    diagnostic_totals: Mapping[str, int] = field(default_factory=dict)
    """Diagnostics per code summed over this reader's reads so far (what a snapshot's
    ``diagnostic_counts`` carries: cumulative per agent instance)."""


def _default_parser() -> NodeParser:
    from node_agent.parsing import SteadyStateParser

    parser: NodeParser = SteadyStateParser(freeze_growth=True)
    return parser


class NodeReader:
    """Runs the configured commands and parses them into one :class:`NodeRead`.

    ``runner`` is injectable for tests of the glitch logic; the default runs processes.
    """

    def __init__(
        self,
        commands: Sequence[str],
        *,
        timeout: float = 30.0,
        parser: NodeParser | None = None,
        near_zero_packets: int = DEFAULT_NEAR_ZERO_PACKETS,
        runner: Callable[[str, float], Awaitable[CommandOutput]] = run_command,
    ) -> None:
        if not commands:
            raise ValueError("at least one command is needed")
        self.commands = tuple(commands)
        self._timeout = timeout
        self._parser = parser if parser is not None else _default_parser()
        self._near_zero = near_zero_packets
        self._runner = runner
        self._previous: Mapping[CounterKey, CounterRecord] = {}
        self.glitches_dodged = 0
        """Near-zero reads dropped because the re-read was normal."""
        self.resets_confirmed = 0
        """Near-zero reads the re-read confirmed (sent as real resets)."""
        self._diagnostic_totals: dict[str, int] = {}

    async def read(self) -> NodeRead:
        """One read; re-reads at once if it looks like the near-zero glitch."""
        first = await self._read_once()
        if not looks_like_glitch(self._previous, first.records, self._near_zero):
            return self._accept(first)
        second = await self._read_once()
        if looks_like_glitch(self._previous, second.records, self._near_zero):
            self.resets_confirmed += 1
        else:
            self.glitches_dodged += 1
        return self._accept(replace(second, seconds=first.seconds + second.seconds, reread=True))

    def _accept(self, read: NodeRead) -> NodeRead:
        self._previous = read.records
        for code, count in read.result.diagnostic_counts().items():
            self._diagnostic_totals[code] = self._diagnostic_totals.get(code, 0) + count
        return replace(read, diagnostic_totals=dict(self._diagnostic_totals))

    async def _read_once(self) -> NodeRead:
        started = time.monotonic()
        read_time = datetime.now(UTC)
        outputs = await asyncio.gather(*(self._runner(command, self._timeout) for command in self.commands))
        inputs = [(output.command, _as_text(output.stdout)) for output in outputs]
        result = await asyncio.to_thread(self._parser.parse, inputs)
        sources = tuple(
            SourceInfo(
                dataplane=int(dataplane_of(output.command, output.stdout)),
                family=family_of(output.command, output.stdout),
                command=output.command,
                rules=result.rules_by_source.get(output.command, 0),
            )
            for output in outputs
        )
        return NodeRead(
            result=result,
            records=index_records(result.records),
            sources=sources,
            read_time=read_time,
            seconds=time.monotonic() - started,
        )


def _as_text(data: bytes) -> str | bytes:
    """Text when it decodes (the parser's fast path compares text), else the bytes, so
    the parser can report ``not_utf8`` with a line number."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data
