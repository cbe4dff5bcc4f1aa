"""``--web-config`` for real: Prometheus scrapes the aggregator and an agent over TLS with
basic auth, as its own scrape configuration says (``scheme: https``, ``tls_config``,
``basic_auth``).

One agent process reads a rendered felix table (``cat FILE``) and streams it to an
aggregator process; both serve their HTTP endpoint with the same exporter-toolkit web
config file.  Asserted: both targets are up in Prometheus and the aggregator's series
carry exactly the packets the agent read; a wrong password gets 401, no credentials 401
with ``WWW-Authenticate: Basic``; plain HTTP to the TLS port gets no answer; the agent's
``/healthz`` and ``/readyz`` answer behind the same config.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from calico_accountant.records import Kind
from node_agent.parsing import parse_node
from tests.support.dumps import scale_dump, write_atomic
from tests.support.felix_render import render, sized_model
from tests.support.pki import make_tls_material
from tests.support.ports import free_port
from tests.support.processes import Processes, processes
from tests.support.prometheus_server import SKIP_REASON, PrometheusServer, prometheus_available
from tests.support.scrape import http_fetch, http_get
from tests.support.skips import requires_tools
from tests.support.waits import wait_until

pytestmark = [
    pytest.mark.slow,
    requires_tools("openssl"),
    pytest.mark.skipif(not prometheus_available(), reason=SKIP_REASON),
]

USER, PASSWORD = "prometheus", "scrape-me"


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group


def test_prometheus_scrapes_over_tls_with_basic_auth(run: Processes, tmp_path: Path) -> None:
    tls = make_tls_material(tmp_path / "pki")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        f"tls_server_config:\n  cert_file: {tls.server_cert}\n  key_file: {tls.server_key}\n"
        f"basic_auth_users:\n  {USER}: '{hashed}'\n"
    )
    dump = tmp_path / "node-0.save"
    table = render(sized_model(10, 3, seed=7)).text
    dump.write_text(table)
    records = parse_node([(str(dump), dump.read_text())]).records
    accepted = sum(r.packets for r in records if r.key.kind is Kind.POLICY_ACCEPT)
    assert accepted > 0

    grpc_port, metrics_port = free_port(), free_port()
    run.aggregator(grpc_port, metrics_port, "--web-config", str(web_config))
    _, agent_port = run.agent(
        "node-0", grpc_port, [f"cat {dump}"], "--interval", "0.5", "--web-config", str(web_config)
    )
    context = ssl.create_default_context(cafile=str(tls.ca))
    aggregator_url = f"https://127.0.0.1:{metrics_port}/metrics"
    agent_url = f"https://127.0.0.1:{agent_port}"
    wait_until(lambda: http_get(f"{agent_url}/readyz", context=context, auth=(USER, PASSWORD))[0] == 200)

    # By hand: credentials are required and checked, plain HTTP gets nothing.
    status, headers, _ = http_fetch(aggregator_url, context=context)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert http_get(aggregator_url, context=context, auth=(USER, "wrong"))[0] == 401
    assert http_get(f"{agent_url}/healthz", context=context)[0] == 401
    assert http_get(f"{agent_url}/healthz", context=context, auth=(USER, PASSWORD)) == (200, "ok\n")
    plain = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain.request("GET", "/metrics")
        plain.getresponse()
    plain.close()

    job = {
        "scheme": "https",
        "tls_config": {"ca_file": str(tls.ca)},
        "basic_auth": {"username": USER, "password": PASSWORD},
    }
    with PrometheusServer([f"127.0.0.1:{metrics_port}", f"127.0.0.1:{agent_port}"], job=job) as prometheus:
        prometheus.wait_for_target_up()
        assert sorted(prometheus.targets_health()) == ["up", "up"]
        # the aggregator counts from the first read it saw (x1); at x2 it has counted x1 once more
        write_atomic(dump, scale_dump(table, 2))
        query = 'sum(calico_accountant_node_policy_packets_total{node="node-0",verdict="accept"})'
        prometheus.wait_for(lambda: prometheus.value(query) == accepted)
        assert prometheus.value("calico_accountant_agent_connected") == 1.0
