"""The exposition: valid for promtool and a real Prometheus, every series of the state with
its value, served over HTTP; and how long a big scrape takes."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from aggregator.accountant import Accountant
from aggregator.exposition import text as text_module
from aggregator.exposition.serving import serve_metrics
from aggregator.exposition.text import render_accountant, render_text
from aggregator.ledger.ledger import Ledger
from aggregator.metrics.selfmon import self_metrics
from aggregator.series.label_text import label_text
from aggregator.series.options import SeriesOptions
from aggregator.series.views import StateView
from calico_accountant import __version__
from calico_accountant.records import CounterRecord, Direction
from tests.support.accounting import (
    EGRESS,
    FakeCatalog,
    accept,
    deny,
    no_policy_drop,
    no_profile_drop,
    policy_rule,
    profile_accept,
    snapshot,
)
from tests.support.ports import free_port
from tests.support.skips import requires_tools

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")


def populated(options: SeriesOptions | None = None) -> Accountant:
    cat = (
        FakeCatalog()
        .add_pod("n1", "cali1", "shop", "web-1", "web", ["169.254.1.1"])
        .add_pod("n2", "cali3", "shop", "db-1", "db", ["169.254.1.3", "2001:db8::3"])
        .add_policy("cali-pi-allow", "allow-web", "shop")
        .add_policy("cali-po-gdeny", "deny-all", tier="security")
    )
    cat.profiles["cali-pri-kns.shop"] = "kns.shop"
    acct = Accountant(cat, options=options)
    acct.apply(
        snapshot(
            "n1",
            [
                accept("cali1", "cali-pi-allow", 5),
                deny("cali1", "cali-po-gdeny", 2, direction=EGRESS, tier="security"),
                no_policy_drop("cali1", 3),
                profile_accept("cali1", "cali-pri-kns.shop", 4),
                no_profile_drop("cali1", 1),
                policy_rule("cali-pi-allow", 0, "allow", 5),
                accept("caliZZ", 'cali-pi-weird"name\\x', 1),  # unresolved, with characters to escape
            ],
            diagnostics={"garbled_line": 2},
        ),
        0,
    )
    acct.apply(snapshot("n2", [accept("cali3", "cali-pi-allow", 7, family=6)]), 0)
    acct.set_connected("n1", True)
    return acct


def promtool_check(text: str) -> tuple[int, str]:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    return result.returncode, result.stdout + result.stderr


@requires_tools("promtool")
def test_promtool_accepts_the_exposition_without_a_single_lint() -> None:
    code, output = promtool_check(render_accountant(populated(), now=0))
    assert code == 0, output
    assert output.strip() == ""


@requires_tools("promtool")
def test_promtool_only_lints_the_historic_compat_names() -> None:
    text = render_accountant(populated(SeriesOptions(compat=True)), now=0)
    assert "\nno_policy_drop_counter{" in text and "\npolicy_accept_counter{" in text
    code, output = promtool_check(text)
    lint_lines = [line for line in output.splitlines() if line.strip()]
    assert lint_lines, "promtool should flag the compat names that lack _total"
    flagged = {line.split()[0] for line in lint_lines}
    assert flagged <= {"no_policy_drop_counter", "policy_accept_counter", "policy_accept_drop_counter"}, (
        output
    )
    expected_lints = ('should have "_total" suffix', "should not include type 'counter'")
    assert all(line.endswith(expected_lints) for line in lint_lines), output
    assert code in (0, 3), output  # 3: lint problems only; anything else is a real error


@requires_tools("promtool")
def test_promtool_catches_a_broken_exposition() -> None:
    # the check above can fail: promtool does reject bad text
    code, _ = promtool_check('calico_accountant_x_total{a="b} 1\n')
    assert code != 0


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _view_samples(view: StateView) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What the exposition of ``view`` must hold, built from the view without any text."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family_view in view.families:
        family = family_view.family
        for labels, (packets, octets) in family_view.series:
            pairs = tuple(sorted(zip(family_view.label_names, labels, strict=True)))
            out[(family.packets_name, pairs)] = packets
            if family.bytes_name is not None:
                out[(family.bytes_name, pairs)] = octets
    for metric in self_metrics(view, __version__):
        for labels, value in metric.samples:
            out[(metric.name, tuple(sorted(zip(metric.labels, labels, strict=True))))] = value
    return out


def test_the_text_holds_every_series_of_the_view_and_nothing_else() -> None:
    acct = populated()
    ours = _samples(render_accountant(acct, now=0))
    theirs = _view_samples(acct.view(0))
    assert ours == theirs
    assert (
        ours[
            (
                "calico_accountant_cluster_policy_packets_total",
                tuple(
                    sorted(
                        {
                            "direction": "ingress",
                            "verdict": "accept",
                            "tier": "default",
                            "policy_kind": "NetworkPolicy",
                            "policy_namespace": "shop",
                            "policy": "allow-web",
                        }.items()
                    )
                ),
            )
        ]
        == 12
    )


def _texts_follow_labels(acct: Accountant, now: float) -> None:
    for family in acct.view(now).families:
        assert family.texts == tuple(label_text(family.label_names, labels) for labels in family.labels)


def test_label_texts_kept_with_the_series_follow_them() -> None:
    """Each series' label text is made once, when the series is created, and kept in the
    order of the family's values: whatever comes and goes (pods retiring and expiring, a
    node forgotten, a rebuild, a restore), every family's texts are its labels' texts, in
    order, and a rendered scrape names exactly the live pods."""
    acct = Accountant(FakeCatalog(), ledger=Ledger(retired_grace=0, node_expiry=1.5))
    acct.set_connected("n1", True)
    for round_ in range(1, 5):  # each full snapshot has other pods: the previous ones retire
        pods = [f"cali-{round_}-{i}" for i in range(600)]
        acct.apply(snapshot("n1", [accept(pod, "cali-pi-allow", 1) for pod in pods], sequence=round_), round_)
        acct.apply(snapshot(f"m{round_}", [accept(pods[0], "cali-pi-allow", 1)], sequence=1), round_)
        acct.set_connected(f"m{round_}", False)
        acct.expire(round_ + 1)  # n1's previous pods expire, m<round - 1> is forgotten
        _texts_follow_labels(acct, round_)
        text = render_text(acct.view(round_))
        assert f'pod="cali-{round_}-599"' in text and f'pod="cali-{round_ - 1}-0"' not in text
        assert f'node="m{round_ - 1}"' not in text
    acct.rebuild()
    _texts_follow_labels(acct, 9)
    nodes, series, tombstones = acct.capture()
    restored = Accountant(FakeCatalog(), ledger=Ledger())
    restored.restore(nodes, series, tombstones)
    _texts_follow_labels(restored, 9)
    assert [(f.labels, f.values, f.texts) for f in restored.view(9).families] == [
        (f.labels, f.values, f.texts) for f in acct.view(9).families
    ]


def test_label_values_are_escaped_and_round_trip() -> None:
    samples = _samples(render_accountant(populated(), now=0))
    policies = {
        dict(labels).get("policy")
        for (name, labels) in samples
        if name.endswith("workload_policy_packets_total")
    }
    assert 'cali-pi-weird"name\\x' in policies


def test_every_policy_family_is_a_counter_with_help() -> None:
    text = render_accountant(populated(SeriesOptions(compat=True)), now=0)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, family in families.items():
        assert family.documentation, name
        if name.startswith(
            ("calico_accountant_workload", "calico_accountant_node_policy", "calico_accountant_cluster")
        ):
            assert family.type == "counter", name
    assert families["calico_accountant_agents_connected"].samples[0].value == 1
    diagnostics = families["calico_accountant_node_parse_diagnostics"].samples
    assert [(s.labels, s.value) for s in diagnostics] == [({"node": "n1", "code": "garbled_line"}, 2)]


@pytest.fixture
def metrics_server() -> Iterator[tuple[int, Accountant]]:
    acct = populated()
    extra = CollectorRegistry()
    Counter("calico_accountant_ingest_messages", "test extra registry", registry=extra).inc(3)
    server = serve_metrics(acct, 0, host="127.0.0.1", extra=extra)
    try:
        yield server.port, acct
    finally:
        server.close()


def test_serves_metrics_over_http_with_gzip(metrics_server: tuple[int, Accountant]) -> None:
    port, acct = metrics_server
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        plain = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "calico_accountant_ingest_messages_total 3.0" in plain
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        unzipped = gzip.decompress(response.read()).decode()
    assert _samples(unzipped) == _samples(plain)
    # new counts show up in the next scrape
    acct.apply(snapshot("n2", [accept("cali3", "cali-pi-allow", 10, family=6)], sequence=2), 1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        after = _samples(response.read().decode())
    key = next(
        k for k in after if k[0] == "calico_accountant_node_policy_packets_total" and ("node", "n2") in k[1]
    )
    assert after[key] == 10


def test_unknown_paths_are_404(metrics_server: tuple[int, Accountant]) -> None:
    port, _ = metrics_server
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
    assert error.value.code == 404


@pytest.mark.slow
@requires_tools("prometheus")
def test_a_real_prometheus_scrapes_and_queries_the_totals(metrics_server: tuple[int, Accountant]) -> None:
    port, _ = metrics_server
    assert PROMETHEUS is not None
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prom.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: acct\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        )
        web = free_port()
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{web}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            query = urllib.parse.quote(
                'sum(calico_accountant_cluster_policy_packets_total{policy="allow-web",verdict="accept"})'
            )
            deadline = time.monotonic() + 60
            value = None
            while time.monotonic() < deadline and value is None:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{web}/api/v1/query?query={query}", timeout=5
                    ) as r:
                        result = json.load(r)["data"]["result"]
                    if result:
                        value = float(result[0]["value"][1])
                except OSError:
                    pass
                time.sleep(0.5)
            assert value == 12
            with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/targets", timeout=5) as r:
                targets = json.load(r)["data"]["activeTargets"]
            assert [t["health"] for t in targets] == ["up"], targets
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


# -- scale: 1000 pods x 40 policies ----------------------------------------------------------


def _big_snapshot(pods: int, policies: int, sequence: int = 1, bump: int = 0) -> list[CounterRecord]:
    records: list[CounterRecord] = []
    for pod in range(pods):
        iface = f"cali{pod:011x}"
        for direction in (Direction.INGRESS, Direction.EGRESS):
            prefix = "cali-pi-" if direction is Direction.INGRESS else "cali-po-"
            for policy in range(policies):
                chain = f"{prefix}_policy{policy:03d}"
                records.append(
                    accept(iface, chain, pod + policy + bump, direction=direction, ids=(f"r{pod}-{policy}",))
                )
                records.append(
                    deny(
                        iface,
                        chain,
                        policy + bump,
                        direction=direction,
                        ids=(f"j{pod}-{policy}", f"r{pod}-{policy}", f"n{pod}-{policy}"),
                    )
                )
            records.append(no_policy_drop(iface, pod + bump, direction=direction))
    return records


def _big_catalog(pods: int, policies: int) -> FakeCatalog:
    cat = FakeCatalog()
    for pod in range(pods):
        cat.add_pod(
            "node-1",
            f"cali{pod:011x}",
            f"ns{pod % 50}",
            f"pod-{pod}",
            f"app{pod % 20}",
            [f"169.254.{pod // 250}.{pod % 250}"],
        )
    for policy in range(policies):
        for prefix in ("cali-pi-", "cali-po-"):
            cat.add_policy(f"{prefix}_policy{policy:03d}", f"policy-{policy}", f"ns{policy % 50}")
    return cat


@pytest.mark.slow
def test_scale_1000_pods_40_policies(capsys: pytest.CaptureFixture[str]) -> None:
    pods, policies = 1000, 40
    records = _big_snapshot(pods, policies)
    acct = Accountant(_big_catalog(pods, policies))
    started = time.perf_counter()
    acct.apply(snapshot("node-1", records), 0)
    first_apply = time.perf_counter() - started
    # a steady-state full snapshot where every counter moved
    moved = _big_snapshot(pods, policies, bump=3)
    started = time.perf_counter()
    increases = acct.apply(snapshot("node-1", moved, sequence=2), 1)
    steady_apply = time.perf_counter() - started
    assert len(increases) == len(moved)
    started = time.perf_counter()
    view = acct.view(1)
    copy_time = time.perf_counter() - started
    started = time.perf_counter()
    text = render_text(view)
    render_time = time.perf_counter() - started
    # the catalog learns one renamed policy: only its counters move
    renamed = _big_catalog(pods, policies).add_policy("cali-pi-_policy007", "renamed", "ns7")
    started = time.perf_counter()
    acct.set_resolver(renamed)
    incremental = time.perf_counter() - started
    assert acct.moved_counters == pods * 2
    started = time.perf_counter()
    acct.rebuild()
    rebuild = time.perf_counter() - started
    lines = text.count("\n")
    with capsys.disabled():
        print(
            f"\nscale {pods} pods x {policies} policies x 2 directions: {len(records)} counters, "
            f"{view.series_count} label sets, {lines} exposition lines, {len(text) / 1e6:.1f} MB\n"
            f"  first full snapshot apply {first_apply:.2f}s, steady full snapshot {steady_apply:.2f}s, "
            f"scrape copy {copy_time:.3f}s + render {render_time:.2f}s, catalog change (1 policy renamed, "
            f"{pods * 2} counters moved) {incremental:.2f}s, full rebuild {rebuild:.2f}s"
        )
    assert view.series_count >= pods * policies * 2 * 2
    assert copy_time + render_time < 10 and steady_apply < 10


def test_a_family_rendered_in_parts_is_the_same_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """However a family's series are cut into parts, the text is the same (headers once)."""
    acct = populated(SeriesOptions(compat=True))
    whole = render_accountant(acct, now=0)
    for size in (1, 2, 7):
        monkeypatch.setattr(text_module, "SERIES_PER_PART", size)
        assert render_accountant(acct, now=0) == whole
        assert whole.count("# TYPE calico_accountant_workload_policy_packets_total counter") == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.text(max_size=12)), max_size=8))
def test_label_text_escapes_exactly_what_the_text_format_needs(pairs: list[tuple[str, str]]) -> None:
    """Whatever the values (quotes, backslashes, line feeds among others), the text is the
    format's: each value with backslash, line feed and double quote escaped, nothing else."""
    names, labels = tuple(name for name, _ in pairs), tuple(value for _, value in pairs)
    escaped = [v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for v in labels]
    expected = (
        "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, escaped, strict=True)) + "}" if names else ""
    )
    assert label_text(names, labels) == expected
