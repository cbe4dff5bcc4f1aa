"""``calico-accountant report``: one node's dumps resolved against the datastore, offline.

Parses the dumps of one node (several files = one node, e.g. ``iptables-save -c`` and
``ip6tables-save -c``), resolves interfaces to pods and chains to policies with the
datastore, and prints either one JSON object per record (zero-valued records included:
a zero says the policy applies and saw nothing) or the exposition the aggregator would
serve for this node.  The counters of a dump are counted as totals, exactly like the
first snapshot of a node the aggregator sees.  Diagnostics go to stderr.

Exit status: 0; 1 when no rule could be parsed or a file cannot be read; 2 when the
datastore cannot be loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from aggregator.catalog.index import Catalog
from aggregator.model import PolicyIdentity, ResolvedCounter
from aggregator.resolution.resolve import Resolver, resolve_counter
from aggregator.series.options import SeriesOptions, parse_labels, parse_levels
from calico_accountant.records import CounterRecord, Kind, ParseResult
from calico_accountant.runtime.flags import FlagSet, positive_float
from calico_accountant_cli.commands.command import add_command
from calico_accountant_cli.commands.parse import read_inputs, write_diagnostics
from node_agent.parsing import parse_node

__all__ = ["load_catalog", "register", "report_json", "report_prometheus", "run"]


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "report",
        help="resolve one node's dumps against the datastore: JSON records or the /metrics exposition",
        description="Parses the dumps of one node (several files are one node, e.g. the output of "
        "iptables-save -c and of ip6tables-save -c), resolves interfaces to pods and chains to policies "
        "with the datastore, and prints either one JSON object per record (zero-valued records included: "
        "a zero says the policy applies and saw nothing) or the exposition the aggregator would serve "
        "for this node. The counters of a dump are counted as totals, exactly like the first snapshot "
        "of a node the aggregator sees. Diagnostics go to stderr.\n\n"
        "Exit status: 0; 1 when no rule could be parsed or a file cannot be read; 2 when the "
        "datastore cannot be loaded.",
        examples=(
            "calico-accountant report --datastore file:cluster.yaml --node node-a node-a.save",
            "calico-accountant report --datastore etcd://127.0.0.1:2379 --node node-a --format prometheus "
            "node-a.save node-a-v6.save",
        ),
    )
    parser.add_argument(
        "files", nargs="*", default=["-"], metavar="FILE", help="dumps of ONE node; - is stdin"
    )
    flags = FlagSet(parser)
    flags.add(
        "--datastore",
        required=True,
        metavar="SPEC",
        help="file:PATH (calicoctl YAML/JSON, etcd key/values, or kubectl's -o json|yaml listing of a "
        "KDD cluster), etcd://HOST:PORT[,...], or kubernetes",
    )
    flags.add(
        "--node",
        required=True,
        help="the node the dumps come from (as Calico names it)",
    )
    flags.add("--format", choices=("json", "prometheus"), default="json", help="output form")
    flags.add(
        "--family",
        type=int,
        choices=(4, 6),
        shown_default="from each dump",
        help="force the IP family of every input",
    )
    flags.add(
        "--compat-metrics",
        action="store_true",
        default=False,
        help="also print monzo/calico-accountant's metric names (prometheus format)",
    )
    flags.add(
        "--levels",
        default="workload,node,cluster",
        help="levels to print in prometheus format (comma separated subset of workload,node,cluster)",
    )
    flags.add(
        "--labels",
        default=None,
        metavar="LABEL,...",
        shown_default="all",
        help="label allow-list for prometheus format: other labels are dropped and their series summed",
    )
    flags.add(
        "--datastore-timeout",
        type=positive_float,
        default=30.0,
        help="seconds to wait for etcd or the API server",
    )
    flags.add(
        "--kubeconfig",
        env="KUBECONFIG",
        metavar="FILE",
        shown_default="the in-cluster ServiceAccount, else ~/.kube/config",
        help="for --datastore kubernetes",
    )
    flags.add(
        "--interface-prefix",
        default="cali",
        env="FELIX_INTERFACEPREFIX",
        help="felix's interface prefix, naming pods' veths in KDD listings",
    )
    flags.add("--etcd-ca", metavar="FILE", help="CA bundle for etcd TLS")
    flags.add("--etcd-cert", metavar="FILE", help="client certificate for etcd")
    flags.add("--etcd-key", metavar="FILE", help="client key for etcd")
    parser.set_defaults(func=run)


# -- the datastore ------------------------------------------------------------------------


def load_catalog(
    spec: str,
    *,
    timeout: float = 30.0,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    kubeconfig: str | None = None,
    interface_prefix: str = "cali",
    warn: TextIO | None = None,
) -> Catalog:
    """A catalog from a ``--datastore`` spec, read once.  Raises ``ValueError`` (bad spec),
    ``OSError``/``DatastoreFileError`` (unreadable file) or ``TimeoutError`` (etcd, API server)."""
    from aggregator.datastore.spec import FileSpec, parse_datastore_spec

    parsed = parse_datastore_spec(
        spec, ca=ca, cert=cert, key=key, kubeconfig=kubeconfig, interface_prefix=interface_prefix
    )
    if isinstance(parsed, FileSpec):
        from aggregator.datastore.file import read_datastore_file

        result = read_datastore_file(parsed.path, parsed.interface_prefix)
        if warn is not None:
            for reason, count in sorted(result.bad.items()):
                warn.write(f"datastore: skipped {count} object(s): {reason}\n")
        return Catalog.from_objects(result.objects)
    return asyncio.run(_load_from_source(parsed, timeout))


async def _load_from_source(spec: Any, timeout: float) -> Catalog:
    from aggregator.datastore.cache import DatastoreCache
    from aggregator.datastore.sources import open_datastore

    cache = DatastoreCache(source=spec.describe())
    source = open_datastore(spec, cache)
    source.start()
    try:
        return await cache.wait_synced(timeout)
    finally:
        await source.stop()


# -- JSON ---------------------------------------------------------------------------------


def _identity(policy: PolicyIdentity) -> dict[str, str]:
    return {
        "kind": policy.kind,
        "namespace": policy.namespace,
        "name": policy.name,
        "tier": policy.tier,
        "stored_name": policy.stored_name,
    }


def resolved_as_json(counter: ResolvedCounter, record: CounterRecord) -> dict[str, Any]:
    """The JSON object ``report --format json`` prints for one record."""
    key = counter.key
    workload = counter.workload
    out: dict[str, Any] = {
        "node": counter.node,
        "namespace": workload.namespace if workload else None,
        "pod": workload.pod if workload else None,
        "app": workload.app if workload else None,
        "ips": list(workload.ips) if workload else [],
        "interface": key.interface or None,
        "resolved": workload.resolved if workload else None,
        "endpoint": key.endpoint.value,
        "family": key.family,
        "direction": key.direction.value,
        "kind": key.kind.value,
        "verdict": counter.verdict,
        "tier": counter.tier,
        "chain": key.chain or None,
        "policy": _identity(counter.policy) if counter.policy is not None and counter.group is None else None,
        "group": (
            {"chain": counter.group.chain, "policies": [_identity(p) for p in counter.group.policies]}
            if counter.group is not None
            else None
        ),
        "profile": counter.profile.name if counter.profile is not None else None,
        "packets": record.packets,
        "bytes": record.bytes,
    }
    host_endpoint = counter.host_endpoint
    if host_endpoint is not None:
        out["host_endpoint"] = host_endpoint.name or None
        out["resolved"] = host_endpoint.resolved
    if key.kind is Kind.POLICY_RULE:
        out["rule"] = key.rule_index
        out["action"] = key.action
    return out


def report_json(result: ParseResult, resolver: Resolver, node: str, out: TextIO) -> int:
    """Print one resolved JSON object per record; returns the number of records."""
    comments = {r.key.chain: r.chain_comment for r in result.records if r.chain_comment and r.key.chain}
    for record in result.records:
        counter = resolve_counter(
            resolver,
            node,
            record.key,
            chain_comment=record.chain_comment,
            group_members=record.group_members,
            comments=comments,
        )
        out.write(json.dumps(resolved_as_json(counter, record), separators=(",", ":")) + "\n")
    return len(result.records)


# -- Prometheus -----------------------------------------------------------------------------


def report_prometheus(result: ParseResult, resolver: Resolver, node: str, options: SeriesOptions) -> str:
    """The exposition the aggregator would serve for this one node."""
    from aggregator.accountant import Accountant
    from aggregator.exposition.text import render_text
    from calico_accountant.wire.snapshots import DecodedSnapshot

    accountant = Accountant(resolver, options=options)
    now = time.time()
    accountant.apply(
        DecodedSnapshot(
            node=node,
            agent_instance_id="report",
            sequence=1,
            read_time=datetime.fromtimestamp(now, UTC),
            full=True,
            records=tuple(result.records),
            removed=(),
            diagnostic_counts=result.diagnostic_counts(),
        ),
        now,
    )
    return render_text(accountant.view(now))


# -- the command ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    try:
        options = SeriesOptions(
            levels=parse_levels(args.levels),
            compat=args.compat_metrics,
            allowed_labels=parse_labels(args.labels) if args.labels else None,
        )
    except ValueError as error:
        print(f"calico-accountant report: {error}", file=err)
        return 2
    try:
        inputs = read_inputs(args.files)
    except OSError as error:
        print(f"calico-accountant report: {error}", file=err)
        return 1
    try:
        catalog = load_catalog(
            args.datastore,
            timeout=args.datastore_timeout,
            ca=args.etcd_ca,
            cert=args.etcd_cert,
            key=args.etcd_key,
            kubeconfig=args.kubeconfig,
            interface_prefix=args.interface_prefix,
            warn=err,
        )
    except (ValueError, OSError, TimeoutError) as error:
        print(f"calico-accountant report: cannot load the datastore: {error}", file=err)
        return 2
    except Exception as error:  # DatastoreFileError and friends: a clear message, not a trace
        print(f"calico-accountant report: cannot load the datastore: {error}", file=err)
        return 2
    result = parse_node(inputs, family=args.family)
    if args.format == "json":
        report_json(result, catalog, args.node, sys.stdout)
    else:
        sys.stdout.write(report_prometheus(result, catalog, args.node, options))
    write_diagnostics(result.diagnostics, err)
    _write_unresolved(result, catalog, args.node, err)
    return 0 if result.rules_seen else 1


def _write_unresolved(result: ParseResult, resolver: Resolver, node: str, err: TextIO) -> None:
    """One stderr line per raw name the datastore did not explain, so a wrong --node or
    datastore is obvious."""
    interfaces: set[str] = set()
    chains: set[str] = set()
    for record in result.records:
        counter = resolve_counter(
            resolver, node, record.key, chain_comment=record.chain_comment, group_members=record.group_members
        )
        endpoint = counter.workload or counter.host_endpoint
        if endpoint is not None and not endpoint.resolved:
            interfaces.add(record.key.interface)
        policies = counter.group.policies if counter.group is not None else ()
        if counter.policy is not None and counter.group is None:
            policies = (counter.policy,)
        chains.update(p.stored_name or p.name for p in policies if not p.resolved)
        if counter.profile is not None and not counter.profile.resolved:
            chains.add(record.key.chain)
    for interface in sorted(interfaces):
        err.write(f"unresolved interface {interface} on node {node}: exported as pod={interface}\n")
    for chain in sorted(chains):
        err.write(f"unresolved chain {chain}: exported with its raw name\n")
