"""The tests' port picker: ports outside the ephemeral range, not handed out twice."""

from __future__ import annotations

import random
import socket

import pytest

from tests.support import ports


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    floor = ports._ephemeral_floor()
    picked = [ports.free_port() for _ in range(200)]
    assert len(set(picked)) == len(picked)
    if floor > ports._LOWEST:  # Linux with an ephemeral range above the floor (the norm)
        assert all(ports._LOWEST <= port < floor for port in picked)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", picked[-1]))


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        offered = iter([taken, taken, 12_345])
        monkeypatch.setattr(ports, "_ephemeral_floor", lambda: 65_536)  # every port a candidate
        monkeypatch.setattr(random, "choice", lambda candidates: next(offered))
        ports._handed_out.discard(12_345)
        assert ports.free_port() == 12_345
