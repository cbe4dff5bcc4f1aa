"""Observations from a Prometheus server's HTTP API: ``increase()`` over our families in a
window ending at ``--at`` (default: now), and the window before it for changes.

Which level is read: the per-workload families when Prometheus has them, else the app
level (``--levels app``); cluster-wide totals from the cluster family, else summed from
those.  The datastore's view comes from ``calico_accountant_policy_info`` and
``_policy_rule_info`` (last value in the window).  ``increase()`` extrapolates to the
window's edges, so figures are rounded to whole packets; a counter that exists in the
window (even at a steady value) is present with 0.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calico_accountant_cli.audit.model import (
    Observations,
    PolicyInfo,
    PolicyKey,
    PolicyTraffic,
    RuleInfo,
    RuleKey,
    WorkloadDrop,
)

__all__ = ["PrometheusSource", "SourceError", "check_window"]

_POLICY = "tier, policy_kind, policy_namespace, policy"
_WINDOW = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")

Sample = tuple[dict[str, str], float]


class SourceError(Exception):
    """The source could not be read: one line for the user (exit status 2)."""


def check_window(window: str) -> str:
    """A Prometheus duration (``7d``, ``1h30m``); :class:`SourceError` otherwise."""
    if not _WINDOW.fullmatch(window):
        raise SourceError(f"bad --window {window!r}: use a Prometheus duration such as 7d, 24h or 1h30m")
    return window


@dataclass(frozen=True, slots=True)
class PrometheusSource:
    url: str
    window: str
    at: str | None = None
    """Evaluation time (Unix seconds or RFC 3339); None: now."""
    timeout: float = 30.0

    def query(self, expression: str) -> list[Sample]:
        params = {"query": expression}
        if self.at is not None:
            params["time"] = self.at
        request = urllib.request.Request(
            self.url.rstrip("/") + "/api/v1/query",
            data=urllib.parse.urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise SourceError(
                f"Prometheus at {self.url} answered {error.code}: {_error_text(error)}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise SourceError(f"cannot reach Prometheus at {self.url}: {error}") from None
        except ValueError:
            raise SourceError(f"{self.url} did not answer with JSON: is it a Prometheus server?") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            raise SourceError(f"Prometheus query failed: {body}")
        data = body.get("data", {})
        if data.get("resultType") != "vector":
            raise SourceError(f"unexpected Prometheus result type {data.get('resultType')!r}")
        return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]

    def _increase(self, family: str, by: str, selector: str = "", offset: bool = False) -> list[Sample]:
        shift = f" offset {self.window}" if offset else ""
        return self.query(f"sum by ({by}) (increase({family}{selector}[{self.window}]{shift}))")

    def _first(self, families: tuple[str, ...], by: str) -> list[Sample]:
        for family in families:
            found = self._increase(family, by)
            if found:
                return found
        return []

    def observe(self) -> Observations:
        check_window(self.window)
        observations = Observations(window=self.window, source=f"prometheus {self.url}")
        self._read_datastore_view(observations)
        for labels, value in self._first(
            ("calico_accountant_workload_policy_packets_total", "calico_accountant_app_policy_packets_total"),
            f"{_POLICY}, namespace, app, direction, verdict",
        ):
            observations.traffic.append(
                PolicyTraffic(
                    _policy(labels),
                    labels.get("namespace", ""),
                    labels.get("app", ""),
                    labels.get("direction", ""),
                    labels.get("verdict", ""),
                    _packets(value),
                )
            )
        cluster_family = self._read_totals(observations)
        for labels, value in self._increase(
            "calico_accountant_node_policy_rule_packets_total", f"{_POLICY}, direction, rule, action"
        ):
            rule = _rule(labels)
            if rule is not None:
                observations.rule_hits[(rule, labels.get("action", ""))] = _packets(value)
        for labels, value in self._first(
            (
                "calico_accountant_workload_no_policy_drop_packets_total",
                "calico_accountant_app_no_policy_drop_packets_total",
                "calico_accountant_cluster_no_policy_drop_packets_total",
            ),
            "namespace, app, direction, tier",
        ):
            observations.drops.append(
                WorkloadDrop(
                    labels.get("namespace", ""),
                    labels.get("app", ""),
                    labels.get("direction", ""),
                    labels.get("tier", ""),
                    _packets(value),
                )
            )
        observations.previous_accepts = self._previous_accepts(cluster_family)
        return observations

    def _read_datastore_view(self, observations: Observations) -> None:
        for labels, _ in self.query(
            f"max by ({_POLICY}, order, selector, canary) "
            f"(last_over_time(calico_accountant_policy_info[{self.window}]))"
        ):
            observations.policies[_policy(labels)] = PolicyInfo(
                labels.get("order", ""), labels.get("selector", ""), labels.get("canary") == "true"
            )
        for labels, _ in self.query(
            f"max by ({_POLICY}, direction, rule, action, protocol, ports, source, destination) "
            f"(last_over_time(calico_accountant_policy_rule_info[{self.window}]))"
        ):
            rule = _rule(labels)
            if rule is not None:
                observations.rules[rule] = RuleInfo(
                    labels.get("action", ""),
                    labels.get("protocol", ""),
                    labels.get("ports", ""),
                    labels.get("source", ""),
                    labels.get("destination", ""),
                )

    def _read_totals(self, observations: Observations) -> bool:
        """Cluster-wide totals per policy, direction and verdict; False when the cluster family
        is not there (they are summed from the per-workload rows instead)."""
        totals = self._increase(
            "calico_accountant_cluster_policy_packets_total", f"{_POLICY}, direction, verdict"
        )
        for labels, value in totals:
            key = (_policy(labels), labels.get("direction", ""), labels.get("verdict", ""))
            observations.policy_totals[key] = _packets(value)
        if not totals:
            for row in observations.traffic:
                key = (row.policy, row.direction, row.verdict)
                observations.policy_totals[key] = observations.policy_totals.get(key, 0) + row.packets
        return bool(totals)

    def _previous_accepts(self, cluster_family: bool) -> dict[PolicyKey, int]:
        families = (
            ("calico_accountant_cluster_policy_packets_total",)
            if cluster_family
            else (
                "calico_accountant_workload_policy_packets_total",
                "calico_accountant_app_policy_packets_total",
            )
        )
        for family in families:
            found = self._increase(family, _POLICY, '{verdict="accept"}', offset=True)
            if found:
                return {_policy(labels): _packets(value) for labels, value in found}
        return {}


def _policy(labels: dict[str, str]) -> PolicyKey:
    return PolicyKey(
        labels.get("tier", ""),
        labels.get("policy_kind", ""),
        labels.get("policy_namespace", ""),
        labels.get("policy", ""),
    )


def _rule(labels: dict[str, str]) -> RuleKey | None:
    try:
        index = int(labels.get("rule", ""))
    except ValueError:
        return None
    return RuleKey(_policy(labels), labels.get("direction", ""), index)


def _packets(value: float) -> int:
    """``increase()`` is extrapolated: the nearest whole packet (never negative)."""
    return max(0, round(value)) if value == value else 0


def _error_text(error: urllib.error.HTTPError) -> str:
    reader: Callable[[], Any] = error.read
    try:
        body = json.loads(reader())
    except (ValueError, OSError):
        return str(error.reason)
    return str(body.get("error", error.reason)) if isinstance(body, dict) else str(error.reason)
