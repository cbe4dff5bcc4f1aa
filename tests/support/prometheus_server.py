"""A real Prometheus server for tests: free port, fresh TSDB dir, 1 s scrapes, stopped by PID.

Usage::

    from tests.support.prometheus_server import PrometheusServer, prometheus_available

    with PrometheusServer(targets=["127.0.0.1:9009"]) as prom:
        prom.wait_for_target_up()
        prom.query('sum(calico_accountant_cluster_policy_packets_total)')   # instant vector
        prom.wait_for(lambda: prom.value('up') == 1.0, timeout=20)

Debian's ``prometheus`` 2.42 is ready in ~0.1 s, but the first scrape is queryable only a
few seconds later even at a 1 s interval: poll the HTTP API, never sleep a fixed time.
Tests skip with :data:`SKIP_REASON` when the binary is missing.  Only the process this
module started is ever signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from tests.support.ports import free_port
from tests.support.processes import ManagedServer, log_tail, stop_process

__all__ = [
    "PROMETHEUS_BINARY",
    "SKIP_REASON",
    "PrometheusServer",
    "Sample",
    "prometheus_available",
]

PROMETHEUS_BINARY = os.environ.get("PROMETHEUS_BINARY", "/usr/bin/prometheus")
SKIP_REASON = f"prometheus not installed at {PROMETHEUS_BINARY} (Debian package prometheus)"

Sample = tuple[dict[str, str], float]
"""One series of an instant query result: its labels and its value."""


def prometheus_available() -> bool:
    return os.access(PROMETHEUS_BINARY, os.X_OK)


class PrometheusServer(ManagedServer):
    """One Prometheus scraping ``targets`` (``host:port``, path ``/metrics``) every second.

    ``job`` adds keys to the scrape job, e.g. ``{"scheme": "https", "tls_config": {...},
    "basic_auth": {...}}`` for a target behind a web config, or ``{"honor_labels": True}``;
    ``target_labels`` are the targets' own labels (as service discovery attaches them);
    ``rule_files`` are loaded and evaluated every ``scrape_interval``.
    """

    def __init__(
        self,
        targets: Sequence[str],
        *,
        scrape_interval: str = "1s",
        start_timeout: float = 30.0,
        job: Mapping[str, Any] | None = None,
        target_labels: Mapping[str, str] | None = None,
        rule_files: Sequence[Path] = (),
        retention: str = "1h",
    ) -> None:
        self.targets = list(targets)
        self.target_labels = dict(target_labels or {})
        self.rule_files = [str(path) for path in rule_files]
        self.job = dict(job or {})
        self.scrape_interval = scrape_interval
        self.retention = retention
        self.start_timeout = start_timeout
        self.root = Path(tempfile.mkdtemp(prefix="prometheus-test-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_path(self) -> Path:
        """The TSDB directory: blocks put here before :meth:`start` (a backfill) are loaded."""
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "prometheus.log"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        config = self.root / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {self.scrape_interval}\n"
            f"  scrape_timeout: {self.scrape_interval}\n"
            f"  evaluation_interval: {self.scrape_interval}\n"
            f"rule_files: {json.dumps(self.rule_files)}\n"
            "scrape_configs:\n"
            "  - job_name: calico-accountant\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(self.targets)}\n"
            f"        labels: {json.dumps(self.target_labels)}\n"
            + "".join(f"    {key}: {json.dumps(value)}\n" for key, value in self.job.items())
        )
        for _attempt in range(3):
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [
                        PROMETHEUS_BINARY,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={self.data_path}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        f"--storage.tsdb.retention.time={self.retention}",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            try:
                self._wait_ready()
                return self
            except RuntimeError:
                self._terminate()
                if "address already in use" not in self.log_tail():
                    raise
        raise RuntimeError(f"prometheus did not start:\n{self.log_tail()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"prometheus not ready in {self.start_timeout}s:\n{self.log_tail()}")

    def _terminate(self) -> None:
        process, self.process = self.process, None
        stop_process(process, grace=15)

    def close(self) -> None:
        self._terminate()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    # ------------------------------------------------------------------ queries

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus query failed: {body}")
        return body["data"]

    def query(self, expression: str, at: float | None = None) -> list[Sample]:
        """An instant query at the latest time (or at ``at``, Unix seconds); each series as
        (labels, value)."""
        params = {"query": expression} if at is None else {"query": expression, "time": f"{at:.3f}"}
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]

    def samples(
        self, expression: str, at: float | None = None
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """The raw samples of a range selector (``name[5m]``): per series, (timestamp, value)."""
        params = {"query": expression} if at is None else {"query": expression, "time": f"{at:.3f}"}
        data = self._get("/api/v1/query", params)
        if data["resultType"] != "matrix":
            raise AssertionError(f"{expression} is not a range selector ({data['resultType']})")
        return [
            (dict(item["metric"]), [(float(t), float(v)) for t, v in item["values"]])
            for item in data["result"]
        ]

    def value(self, expression: str) -> float | None:
        """The single value of ``expression``; None when it has no series."""
        result = self.query(expression)
        if not result:
            return None
        if len(result) > 1:
            raise AssertionError(f"{expression} returned {len(result)} series")
        return result[0][1]

    def targets_health(self) -> list[str]:
        data = self._get("/api/v1/targets", {"state": "active"})
        return [str(target["health"]) for target in data["activeTargets"]]

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its evaluation state (``health``, ``lastError``, ``type``)."""
        data = self._get("/api/v1/rules", {})
        return [rule for group in data["groups"] for rule in group["rules"]]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.2) -> float:
        """Poll until ``predicate()`` is true; returns the seconds it took, raises on timeout."""
        start = time.monotonic()
        while True:
            with contextlib.suppress(urllib.error.URLError, OSError):
                if predicate():
                    return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)

    def wait_for_target_up(self, timeout: float = 30.0) -> float:
        """Until every target has been scraped successfully and ``up`` is queryable."""
        return self.wait_for(
            lambda: (
                bool(self.targets_health())
                and all(h == "up" for h in self.targets_health())
                and self.value("min(up)") == 1.0
            ),
            timeout,
        )
