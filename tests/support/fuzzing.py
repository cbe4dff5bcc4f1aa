"""The fuzz targets and their oracles, shared by the fuzz tests and ``bench/fuzz.py``.

Each target takes one input and returns the problems it found (an empty list: the input
was handled as promised).  An exception escaping the code under test is a problem, never a
crash of the fuzzer, so a long run counts every failure and keeps going.

* :func:`parser_problems`: :func:`~node_agent.parsing.parse_node` (the columnar path and the
  general one) never raises, gives records with well-formed keys and counts that fit u64
  and the wire, and a :class:`~node_agent.parsing.SteadyStateParser` reading it after a
  good read gives what a fresh parse gives;
* :func:`wire_problems`: the aggregator's decoding of a message (``decode_snapshot``,
  ``ChunkAssembler.add``) raises nothing but :class:`~calico_accountant.wire.WireError`;
* :class:`IngestHarness`: a real aggregator on loopback in a background thread; every
  stream must end with acks or a clear gRPC status, nothing logged with a traceback, the
  state within its caps, and a genuine agent still counted exactly afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from aggregator.ingest.limits import StreamLimits
from aggregator.server import Aggregator, AggregatorConfig
from calico_accountant.records import (
    CounterKey,
    CounterRecord,
    Direction,
    EndpointKind,
    Kind,
    ParseResult,
    RuleAction,
)
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.bounds import MAX_CHUNKS, MAX_CODE_LENGTH, MAX_NAME_LENGTH, WireError
from calico_accountant.wire.chunks import ChunkAssembler
from calico_accountant.wire.counters import counter_to_record, record_to_counter
from calico_accountant.wire.delta import index_records
from calico_accountant.wire.keyed import KeyIds, encode_read
from calico_accountant.wire.snapshots import build_snapshot, decode_snapshot
from node_agent.parsing import SteadyStateParser, parse_node
from tests.support.mutations import T0, random_records
from tests.support.waits import wait_until

__all__ = [
    "CLEAR_CODES",
    "ErrorLog",
    "IngestHarness",
    "StreamOutcome",
    "key_problem",
    "parser_problems",
    "peak_traced",
    "record_problem",
    "steady_problems",
    "wire_problems",
]

U64 = 2**64 - 1
_ACTIONS = frozenset(action.value for action in RuleAction)


def _crash(what: str, error: BaseException) -> str:
    """A problem line for an exception that escaped: type, message and the innermost frame."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{what} raised {type(error).__name__}: {str(error)[:200]}{where}"


# --- parser ------------------------------------------------------------------------------


def key_problem(key: CounterKey) -> str | None:
    """Why ``key`` is not a key the parser may produce (the invariants the ledger and
    the wire rely on), or None."""
    if not isinstance(key.kind, Kind) or not isinstance(key.direction, Direction):
        return f"kind/direction not enum members: {key!r}"
    if not isinstance(key.endpoint, EndpointKind):
        return f"endpoint not an EndpointKind: {key!r}"
    if key.family not in (4, 6):
        return f"family {key.family!r}"
    if not all(isinstance(text, str) for text in (key.interface, key.chain, key.tier, key.action)):
        return f"non-string field: {key!r}"
    if key.kind is Kind.POLICY_RULE:
        if not (isinstance(key.rule_index, int) and key.rule_index >= 0):
            return f"policy_rule with rule_index {key.rule_index!r}"
        if key.action not in _ACTIONS or not key.chain or key.interface:
            return f"policy_rule without action/chain, or with an interface: {key!r}"
        if key.endpoint is not EndpointKind.WORKLOAD:
            return f"policy_rule of a host endpoint: {key!r}"
    elif key.rule_index != -1 or key.action or not key.interface:
        return f"{key.kind.value} with rule_index/action or without interface: {key!r}"
    return None


def record_problem(record: CounterRecord) -> str | None:
    """Why ``record`` is not one the agent can send, or None."""
    problem = key_problem(record.key)
    if problem is not None:
        return problem
    for name, value in (("packets", record.packets), ("bytes", record.bytes)):
        if not isinstance(value, int) or not 0 <= value <= U64:
            return f"{name} {value!r} outside 0..2**64-1 in {record.key!r}"
    if not all(isinstance(text, str) for text in (*record.rule_ids, *record.group_members)):
        return f"non-string rule id or member in {record.key!r}"
    try:
        record_to_counter(record).SerializeToString()
    except Exception as error:
        return _crash(f"record_to_counter({record.key!r})", error)
    return None


def wire_rejects(record: CounterRecord) -> str | None:
    """Why the aggregator would skip ``record`` (a length cap), or None.  Not a parser
    failure: felix never writes names that long, so only damaged dumps give them."""
    try:
        counter_to_record(record_to_counter(record))
    except WireError as error:
        return str(error)
    return None


def _result_problems(result: object, what: str) -> list[str]:
    if not isinstance(result, ParseResult):
        return [f"{what} returned {type(result).__name__}"]
    problems = []
    for record in result.records:
        problem = record_problem(record)
        if problem is not None:
            problems.append(f"{what}: {problem}")
            break
    return problems


def _values(result: ParseResult) -> Counter[tuple[CounterKey, int, int, tuple[str, ...]]]:
    return Counter((r.key, r.packets, r.bytes, r.rule_ids) for r in result.records)


def parser_problems(data: bytes, *, general: bool = True, family: int | None = None) -> list[str]:
    """Parse ``data`` as one node's table; ``general`` also parses it by the general path
    alone (``columnar=False``), which must give the same records."""
    problems: list[str] = []
    results: list[ParseResult] = []
    for columnar in (True, False) if general else (True,):
        what = f"parse_node(columnar={columnar})"
        try:
            result = parse_node([("fuzz", data)], family=family, columnar=columnar)
        except Exception as error:
            problems.append(_crash(what, error))
            continue
        problems += _result_problems(result, what)
        results.append(result)
    if len(results) == 2 and _values(results[0]) != _values(results[1]):
        problems.append("the columnar and the general path gave different records")
    return problems


def steady_problems(good: bytes, data: bytes) -> list[str]:
    """The agent's parser reading ``good``, ``data``, ``good``, ``data``: every read must
    give what a fresh parse of it gives (records and diagnostic counts)."""
    steady = SteadyStateParser()
    problems: list[str] = []
    for index, text in enumerate((good, data, good, data)):
        what = f"SteadyStateParser read {index + 1}"
        try:
            got = steady.parse([("fuzz", text)])
        except Exception as error:
            return [*problems, _crash(what, error)]
        problems += _result_problems(got, what)
        try:
            fresh = parse_node([("fuzz", text)])
        except Exception as error:
            return [*problems, _crash("parse_node", error)]
        if _values(got) != _values(fresh):
            problems.append(f"{what}: records differ from a fresh parse")
        elif got.diagnostic_counts() != fresh.diagnostic_counts():
            problems.append(
                f"{what}: diagnostics {got.diagnostic_counts()} != fresh {fresh.diagnostic_counts()}"
            )
    return problems


def peak_traced(function: Callable[[], object]) -> int:
    """Peak bytes ``function`` allocated (tracemalloc, on top of what was allocated before)."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        function()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        if started:
            tracemalloc.stop()


# --- wire --------------------------------------------------------------------------------


def wire_problems(data: bytes, assembler: ChunkAssembler | None = None) -> tuple[str, list[str]]:
    """Decode ``data`` as the aggregator does; the outcome (``undecodable``, ``wire_error``,
    ``decoded``, ``chunk_pending``) and any problems.  ``assembler`` carries chunk state from
    one message to the next, as one stream's does."""
    try:
        message = pb.NodeSnapshot.FromString(data)
    except DecodeError:
        return "undecodable", []  # gRPC's deserializer refuses it before the servicer sees it
    except Exception as error:
        return "crash", [_crash("NodeSnapshot.FromString", error)]
    problems: list[str] = []
    outcome = "decoded"
    try:
        decoded = decode_snapshot(message)
    except WireError:
        outcome = "wire_error"
    except Exception as error:
        return "crash", [_crash("decode_snapshot", error)]
    else:
        for record in decoded.records:
            problem = record_problem(record)
            if problem is not None:
                problems.append(f"decode_snapshot kept an invalid record: {problem}")
                break
        if decoded.key_ids and len(decoded.key_ids) != len(decoded.records):
            problems.append("decode_snapshot kept key ids that do not match its records")
        values = decoded.values
        if not len(values.ids) == len(values.packets) == len(values.bytes) or 0 in values.ids:
            problems.append("decode_snapshot kept value columns of unequal length or id 0")
        if decoded.full and (len(values) or decoded.removed_ids):
            problems.append("decode_snapshot kept values by id in a full snapshot")
        kept = len(decoded.records) + len(decoded.removed)
        if decoded.invalid_counters != len(message.counters) + len(message.removed) - kept:
            problems.append("invalid_counters does not add up")
    if assembler is not None:
        try:
            whole = assembler.add(message)
        except WireError:
            outcome = "wire_error"
        except Exception as error:
            return "crash", [*problems, _crash("ChunkAssembler.add", error)]
        else:
            if whole is None:
                outcome = "chunk_pending"
            else:
                try:
                    decode_snapshot(whole)
                except WireError:
                    outcome = "wire_error"
                except Exception as error:
                    return "crash", [*problems, _crash("decode_snapshot(reassembled)", error)]
        if len(assembler._parts) > MAX_CHUNKS:
            problems.append(f"the assembler holds {len(assembler._parts)} chunks")
    return outcome, problems


# --- ingest ------------------------------------------------------------------------------

INGEST_METHOD = "/calico_accountant.v1.Ingest/StreamSnapshots"

CLEAR_CODES = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
"""Statuses that say what was wrong.  UNKNOWN and INTERNAL (an exception escaped),
DEADLINE_EXCEEDED (the server hung) and UNAVAILABLE (it died) are failures."""


class ErrorLog(logging.Handler):
    """Keeps every log record at ERROR or above, or carrying a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info or "Traceback" in record.getMessage():
            self.records.append(record)

    def summary(self) -> list[str]:
        return [f"{r.name} {r.levelname}: {r.getMessage()[:300]}" for r in self.records]


@dataclass
class StreamOutcome:
    acks: list[pb.IngestAck] = field(default_factory=list)
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""
    problems: list[str] = field(default_factory=list)


class IngestHarness:
    """A real aggregator on 127.0.0.1 with its event loop in a background thread, and a
    plain (synchronous) client channel that sends raw bytes as ``NodeSnapshot`` messages."""

    PENDING_BYTES = 16 * 1024 * 1024
    """The cap on one stream's unfinished snapshot the harness configures (the default is
    128 MiB): small enough that a fuzzed stream reaches it in a few messages."""

    def __init__(self, **config: Any) -> None:
        config.setdefault(
            "stream_limits",
            StreamLimits(
                max_pending_bytes=self.PENDING_BYTES, max_pending_bytes_total=4 * self.PENDING_BYTES
            ),
        )
        self.errors = ErrorLog()
        logging.getLogger().addHandler(self.errors)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fuzz-aggregator", daemon=True)
        self._thread.start()
        settings = AggregatorConfig(
            grpc_host="127.0.0.1", grpc_port=0, metrics_host="127.0.0.1", metrics_port=0, **config
        )
        self.aggregator: Aggregator = self._run(self._start(settings))
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{self.aggregator.grpc_port}", options=[("grpc.max_receive_message_length", 8 << 20)]
        )
        # No serializers: the bytes sent are exactly the mutators' (acks come back as bytes).
        self._method = self.channel.stream_stream(INGEST_METHOD, None, None)
        self._genuine = 0

    @staticmethod
    async def _start(config: AggregatorConfig) -> Aggregator:
        """Built inside the loop's thread: a grpc.aio server binds to the loop it is made in."""
        aggregator = Aggregator(config)
        await aggregator.start()
        return aggregator

    def _run(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def close(self) -> None:
        self.channel.close()
        self._run(self.aggregator.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        logging.getLogger().removeHandler(self.errors)

    def stream(self, messages: Sequence[bytes], timeout: float = 30) -> StreamOutcome:
        """Send ``messages`` on one stream, half-close, read to the end."""
        outcome = StreamOutcome()
        call = self._method(iter(messages), timeout=timeout)
        try:
            for raw in call:
                outcome.acks.append(pb.IngestAck.FromString(raw))
        except grpc.RpcError as error:
            outcome.code = error.code()
            outcome.details = error.details() or ""
        if outcome.code not in CLEAR_CODES:
            outcome.problems.append(f"stream ended {outcome.code.name}: {outcome.details[:300]}")
        elif outcome.code is not grpc.StatusCode.OK and not outcome.details:
            outcome.problems.append(f"stream ended {outcome.code.name} without saying why")
        if len(outcome.acks) > len(messages):
            outcome.problems.append(f"{len(outcome.acks)} acks for {len(messages)} messages")
        return outcome

    def state_problems(self) -> list[str]:
        """The aggregator's state within its documented caps, nothing left pending or open
        (call it between streams)."""
        problems: list[str] = []
        config = self.aggregator.config
        ledger = self.aggregator.accountant.ledger
        nodes = ledger.nodes()
        if len(nodes) > config.ledger_limits.max_nodes:
            problems.append(f"{len(nodes)} nodes known, over the cap {config.ledger_limits.max_nodes}")
        for state in nodes:
            if len(state.diagnostic_totals) > config.ledger_limits.max_diagnostic_codes:
                problems.append(
                    f"node {state.node[:40]!r} keeps {len(state.diagnostic_totals)} diagnostic codes, "
                    f"over the cap {config.ledger_limits.max_diagnostic_codes}"
                )
                break
            longest = max(map(len, state.diagnostic_totals), default=0)
            if longest > MAX_CODE_LENGTH or len(state.agent_version) > MAX_NAME_LENGTH:
                problems.append(
                    f"node {state.node[:40]!r} keeps a {longest}-character diagnostic code or a "
                    f"{len(state.agent_version)}-character agent version"
                )
                break
        # The client sees a stream's status before the servicer's cleanup has run: poll.
        registry = self.aggregator.registry
        left = ("calico_accountant_ingest_pending_bytes", "calico_accountant_ingest_streams")
        try:
            wait_until(lambda: not any(registry.get_sample_value(name) for name in left), timeout=10)
        except AssertionError:
            values = {name: registry.get_sample_value(name) for name in left}
            problems.append(f"pending bytes or open streams left after all streams ended: {values}")
        return problems

    def held(self) -> str:
        """What the aggregator holds now (what its memory should follow): nodes, counters
        (live and retired, until their grace period ends) and hits in the replay window."""
        nodes = self.aggregator.accountant.ledger.nodes()
        counters = sum(state.counters_known for state in nodes)
        window = self.aggregator.registry.get_sample_value("calico_accountant_hits_window") or 0
        return f"{len(nodes)} nodes, {counters:,} counters, {window:,.0f} hits in the replay window"

    def genuine_problems(self, counters: int = 40) -> list[str]:
        """A fresh node's full snapshot and one delta, as a real agent sends them (every
        other one by key id): both acknowledged, and the node's totals exactly what grew
        since the full one."""
        import random

        self._genuine += 1
        node = f"genuine-{self._genuine}"
        rng = random.Random(self._genuine)
        first = [
            r._replace(packets=rng.randrange(1 << 30), bytes=rng.randrange(1 << 40))
            for r in random_records(rng, counters)
        ]
        second = [
            r._replace(packets=r.packets + rng.randrange(1000), bytes=r.bytes + rng.randrange(10**6))
            for r in first
        ]
        # Every other genuine agent sends its delta by key id, as agents do with this aggregator.
        ids, acked, messages = KeyIds(), None, []
        for sequence, records in ((1, first), (2, second)):
            current = index_records(records)
            encoded = encode_read(ids, acked, current, by_id=self._genuine % 2 == 0)
            messages.append(
                build_snapshot(
                    node=node,
                    agent_instance_id="genuine",
                    sequence=sequence,
                    read_time=T0 + timedelta(seconds=sequence),
                    full=sequence == 1,
                    records=encoded.defined,
                    key_ids=encoded.defined_ids,
                    values=encoded.values,
                    removed=encoded.removed,
                    removed_ids=encoded.removed_ids,
                ).SerializeToString()
            )
            acked = current
        outcome = self.stream(messages)
        problems = list(outcome.problems)
        if outcome.code is not grpc.StatusCode.OK:
            problems.append(f"genuine stream ended {outcome.code.name}: {outcome.details}")
        acks = [(a.sequence, a.resync_requested, a.message) for a in outcome.acks]
        if acks != [(1, False, ""), (2, False, "")]:
            problems.append(f"genuine acks {acks}")
        counters_state = self.aggregator.accountant.ledger.counters(node)
        totals = {key: (state.total_packets, state.total_bytes) for key, state in counters_state.items()}
        # the aggregator counts from a node's first snapshot (its baseline): the delta's growth
        base = {r.key: (r.packets, r.bytes) for r in first}
        wanted = {
            r.key: (r.packets - base[r.key][0], r.bytes - base[r.key][1])
            for r in index_records(second).values()
        }
        if totals != wanted:
            wrong = sum(1 for key, value in wanted.items() if totals.get(key) != value)
            problems.append(f"genuine node totals differ for {wrong} of {len(wanted)} counters")
        return problems
