"""A reconnect storm: every agent's full snapshot arrives at once, and none gives up.

Real processes on loopback: one aggregator and eight agents started together, each with a
node of 300 pods (a felix-rendered table, ~20k counters) and an ack timeout of 1 s, far
shorter than the time the aggregator needs to apply all eight full snapshots one after the
other (full snapshots take turns: :mod:`aggregator.ingest.queue`).  The precondition is
checked, not assumed: the aggregator's own apply time for the full snapshots adds up to
more than the agents' ack timeout, so the last in line waited longer than that.  What is
asserted: every node's snapshot was applied, the agents got interim acks while they waited,
and not one agent timed out and reconnected (before interim acks, each one past its
timeout reconnected and sent its full snapshot again).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node_agent.parsing import parse_node
from tests.support.dumps import write_atomic
from tests.support.felix_render import render, sized_model
from tests.support.ports import free_port
from tests.support.processes import Processes, processes
from tests.support.scrape import http_get, metric_samples
from tests.support.waits import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

AGENTS = 8
ACK_TIMEOUT = 1.0


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group


def _metrics(port: int) -> str:
    return http_get(f"http://127.0.0.1:{port}/metrics")[1]


def test_agents_connecting_at_once_wait_their_turn_and_none_reconnects(
    run: Processes, tmp_path: Path
) -> None:
    text = render(sized_model(300, 10, seed=3)).text
    counters = len(parse_node([("n", text)]).records)
    dump = tmp_path / "node.save"
    write_atomic(dump, text)
    grpc_port, metrics_port = free_port(), free_port()
    run.aggregator(grpc_port, metrics_port, "--ingest-heartbeat", "0.2")
    wait_until(lambda: _metrics(metrics_port), timeout=30, what="the aggregator serving")
    agents = [
        run.agent(
            f"storm-{i}", grpc_port, [f"cat {dump}"], "--interval", "2", "--ack-timeout", str(ACK_TIMEOUT)
        )[1]
        for i in range(AGENTS)
    ]

    def applied() -> str | None:
        body = _metrics(metrics_port)
        full = metric_samples(body, "calico_accountant_ingest_snapshots_total").get(
            (("outcome", "applied"), ("type", "full")), 0
        )
        return body if full >= AGENTS else None

    body = wait_until(applied, timeout=120, interval=0.2, what="every agent's full snapshot applied")
    apply_seconds = metric_samples(body, "calico_accountant_ingest_apply_seconds_sum")[()]
    # Precondition: taking turns, the last one waited about the sum of the others' applies.
    assert apply_seconds > ACK_TIMEOUT * 1.5, (
        f"{AGENTS} full snapshots of {counters} counters applied in {apply_seconds:.2f} s: too fast for "
        f"this test to mean anything on this machine"
    )
    assert metric_samples(body, "calico_accountant_ingest_waiting_acks_total")[()] > 0
    full = metric_samples(body, "calico_accountant_ingest_snapshots_total")[
        (("outcome", "applied"), ("type", "full"))
    ]
    assert full == AGENTS  # each node's full snapshot once: nobody sent it again
    for port in agents:
        agent = _metrics(port)
        assert metric_samples(agent, "calico_accountant_agent_reconnects_total").get((), 0) == 0
        assert metric_samples(agent, "calico_accountant_agent_queue_position")[()] == 0
