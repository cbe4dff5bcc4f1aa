"""``calico_accountant_build_info`` and ``process_*`` in both daemons' /metrics, and the
daemons configured from the environment alone (ports, JSON logs), as real processes."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import pytest

from calico_accountant import __version__
from calico_accountant.runtime.build_info import CHECKOUT, REVISION_ENV, revision
from tests.support.dumps import write_atomic
from tests.support.felix_render import render, sized_model
from tests.support.ports import free_port
from tests.support.processes import processes
from tests.support.scrape import http_get, metric_samples
from tests.support.waits import wait_until


def git(directory: Path, *argv: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@example.com", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_revision_from_the_environment_then_git_then_unknown(tmp_path: Path) -> None:
    assert revision({REVISION_ENV: "abc123"}, tmp_path) == "abc123"
    assert revision({}, tmp_path) == "unknown"  # not a checkout
    git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("x")
    git(tmp_path, "add", "f")
    git(tmp_path, "commit", "-q", "-m", "one")
    assert revision({}, tmp_path) == git(tmp_path, "rev-parse", "HEAD")
    assert len(revision({}, tmp_path)) == 40


def test_this_checkout_reports_its_head() -> None:
    if not (CHECKOUT / ".git").exists():
        pytest.skip("not running from a git checkout")
    assert revision({}) == git(CHECKOUT, "rev-parse", "HEAD")


@pytest.mark.slow
def test_both_daemons_export_build_info_and_process_metrics(tmp_path: Path) -> None:
    save = tmp_path / "node-a.save"
    write_atomic(save, render(sized_model(3, 2, seed=1)).text)
    grpc_port, metrics_port, health_port = free_port(), free_port(), free_port()
    env = {
        REVISION_ENV: "0123456789ab",
        "CALICO_ACCOUNTANT_GRPC_HOST": "127.0.0.1",
        "CALICO_ACCOUNTANT_GRPC_PORT": str(grpc_port),
        "CALICO_ACCOUNTANT_METRICS_HOST": "127.0.0.1",
        "CALICO_ACCOUNTANT_METRICS_PORT": str(metrics_port),
        "CALICO_ACCOUNTANT_HEALTH_HOST": "127.0.0.1",
        "CALICO_ACCOUNTANT_HEALTH_PORT": str(health_port),
        "CALICO_ACCOUNTANT_LOG_FORMAT": "json",
    }
    with processes(tmp_path) as run:
        aggregator = run.start("aggregator", ["-m", "calico_accountant_cli", "aggregator"], env)
        _, agent_port = run.agent(
            "node-a", grpc_port, [f"cat {save}"], "--no-ipv6", env={REVISION_ENV: "0123456789ab"}
        )
        expected = (
            ("python_version", platform.python_version()),
            ("revision", "0123456789ab"),
            ("version", __version__),
        )
        for port in (metrics_port, agent_port):
            url = f"http://127.0.0.1:{port}/metrics"
            wait_until(lambda url=url: http_get(url)[0] == 200, what=f"{url} served")  # type: ignore[misc]
            text = http_get(url)[1]
            assert metric_samples(text, "calico_accountant_build_info") == {expected: 1.0}, url
            assert metric_samples(text, "process_resident_memory_bytes")[()] > 0, url
            assert metric_samples(text, "process_start_time_seconds")[()] > 0, url
        lines = [line for line in aggregator.output().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert records and {"time", "level", "logger", "message"} <= set(records[0])
        assert any(r["logger"].startswith("calico_accountant") for r in records)
