"""``calico-accountant report`` for KDD users: the sample cluster as Kubernetes objects resolves
record for record like the same cluster written into etcd the way Calico stores it.

Three datastores hold one cluster (the demo's sample, :mod:`calico_accountant_cli.demo.cluster`):
etcd (Calico v3.30's etcd layout, written by the demo's :class:`ClusterStore`), a ``kubectl get
... -A -o json`` / ``-o yaml`` listing of the same cluster in KDD form
(:func:`tests.support.kube_objects.kdd_cluster`), and the stand-in API server (NOT a
kube-apiserver, :mod:`tests.support.kube_api`) serving those objects to ``--datastore
kubernetes``.  The sample nodes' dumps (v3.27 and v3.30 layouts) must give identical reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from calico_accountant_cli.demo.cluster import load_sample_cluster
from calico_accountant_cli.demo.store import ClusterStore
from calico_accountant_cli.main import main
from tests.support.etcd_server import EtcdServer
from tests.support.kube_api import KubeApiServer
from tests.support.kube_objects import kdd_cluster, kubectl_list

SAMPLE = Path(__file__).resolve().parent.parent / "calico_accountant_cli" / "sample"
DUMPS = [(node, layout) for node in ("node-a", "node-b") for layout in ("v3.27", "v3.30")]


def report(
    capsys: pytest.CaptureFixture[str], datastore: str, node: str, layout: str, *extra: str
) -> list[str]:
    dump = SAMPLE / f"{node}.{layout}.save"
    code = main(["report", "--datastore", datastore, "--node", node, str(dump), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out.splitlines()


def test_a_kubectl_listing_reports_like_etcd_record_for_record(
    etcd: EtcdServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = load_sample_cluster()
    with ClusterStore(f"etcd://{etcd.endpoint}") as store:
        store.write(cluster)
    listing = kubectl_list(kdd_cluster(cluster))
    as_json = tmp_path / "cluster.json"
    as_json.write_text(json.dumps(listing, indent=2))
    as_yaml = tmp_path / "cluster.yaml"
    as_yaml.write_text(yaml.safe_dump(listing))
    with KubeApiServer(tmp_path / "api") as api:
        api.put(*kdd_cluster(cluster))
        kubeconfig = str(api.write_kubeconfig())
        for node, layout in DUMPS:
            from_etcd = report(capsys, f"etcd://{etcd.endpoint}", node, layout)
            records = [json.loads(line) for line in from_etcd]
            assert records and all(r["resolved"] for r in records if r["interface"])
            assert all(r["policy"]["kind"] != "Unresolved" for r in records if r["policy"])
            assert report(capsys, f"file:{as_json}", node, layout) == from_etcd
            assert report(capsys, f"file:{as_yaml}", node, layout) == from_etcd
            assert report(capsys, "kubernetes", node, layout, "--kubeconfig", kubeconfig) == from_etcd
    kinds = {(r["policy"] or {}).get("kind") for r in records}
    assert {"KubernetesNetworkPolicy", "NetworkPolicy", "GlobalNetworkPolicy"} <= kinds
