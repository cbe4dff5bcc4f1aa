"""Programming the lab nodes' IP sets and filter tables the way felix does (needs root).

Felix diff-updates its chains: a rule whose ``cali:`` hash is unchanged keeps its place
and its counter, a changed rule starts from zero.  :func:`program_node` does the same
with one atomic ``iptables-restore -c`` of the newly rendered table carrying the old
counters over by hash (:func:`calico_accountant_cli.demo.render.carry_counters`), after
bringing the IP sets the rules match up to date (``ipset restore``; sets no longer used
are destroyed afterwards).  A packet counted between the save and the restore would be
lost, so callers change tables while no traffic is flowing (the end-to-end test does;
the demo only programs tables at start).

In felix's nftables mode (``nftables=True``) the same table is written as ``table ip
calico`` (:mod:`calico_accountant_cli.lab.nft_rules`) and replaced in one ``nft -f``
transaction, the counters carried over by hash from ``nft -j list table`` the same way.
"""

from __future__ import annotations

import shlex
import shutil

from calico_accountant_cli.demo.cluster import Cluster
from calico_accountant_cli.demo.render import carry_counters, nft_chain_names, node_ipsets, render_node_table
from calico_accountant_cli.lab.calico_rules import Layout
from calico_accountant_cli.lab.iptables import Backend, restore, save, tool
from calico_accountant_cli.lab.netns import netns_exec_argv, run_command
from calico_accountant_cli.lab.nft_rules import to_nft
from calico_accountant_cli.lab.nftables import (
    counters_as_save,
    list_command,
    list_table,
    load_table,
    zero_chain_counters,
)

__all__ = ["ipset_available", "program_node", "save_command", "zero_chains"]

_SET_PREFIX = "cali40"


def ipset_available() -> bool:
    """Whether the ``ipset`` tool is installed (Debian package ``ipset``)."""
    return shutil.which("ipset") is not None


def _sync_ipsets(namespace: str, sets: dict[str, tuple[str, ...]]) -> None:
    lines = []
    for name, members in sorted(sets.items()):
        lines += [f"create {name} hash:net family inet", f"flush {name}"]
        lines += [f"add {name} {member}" for member in members]
    if lines:
        run_command(
            netns_exec_argv(namespace, ["ipset", "restore", "-exist"]), input_text="\n".join(lines) + "\n"
        )


def _destroy_unused_ipsets(namespace: str, keep: set[str]) -> None:
    names = run_command(netns_exec_argv(namespace, ["ipset", "list", "-n"])).split()
    for name in names:
        if name.startswith(_SET_PREFIX) and name not in keep:
            run_command(netns_exec_argv(namespace, ["ipset", "destroy", name]))


def program_node(
    namespace: str,
    cluster: Cluster,
    node: str,
    layout: Layout,
    *,
    backend: Backend = Backend.LEGACY,
    reset_chains: frozenset[str] = frozenset(),
    fresh: bool = False,
    use_ipsets: bool | None = None,
    nftables: bool = False,
) -> str:
    """Render ``node``'s table from ``cluster`` and load it into ``namespace``; returns the text loaded.

    Counters carry over by rule hash unless ``fresh``; ``reset_chains`` start from zero.
    Rule sources are IP sets when ``ipset`` is installed (``use_ipsets=None``), else
    ``-s``/match blocks.  ``nftables``: felix's nftables mode instead, ``table ip calico``
    replaced in one ``nft -f`` transaction (v3.30 layout, sources as ``ip saddr`` matches),
    counters carried over by hash the same way.
    """
    if nftables:
        names = nft_chain_names(cluster, layout)
        text = render_node_table(cluster, node, layout, use_ipsets=False)
        if not fresh:
            back = {nft: iptables for iptables, nft in names.items()}
            saved = counters_as_save(list_table(namespace, 4), back)
            text = carry_counters(saved, text, reset_chains=reset_chains)
        script = to_nft(text, 4, names).script
        load_table(namespace, 4, script)
        return script
    if use_ipsets is None:
        use_ipsets = ipset_available()
    sets = node_ipsets(cluster, node, layout) if use_ipsets else {}
    if use_ipsets:
        _sync_ipsets(namespace, sets)
    rendered = render_node_table(cluster, node, layout, use_ipsets=use_ipsets)
    if not fresh:
        rendered = carry_counters(save(namespace, backend=backend), rendered, reset_chains=reset_chains)
    restore(namespace, rendered, backend=backend, counters=True)
    if use_ipsets:
        _destroy_unused_ipsets(namespace, set(sets))
    return rendered


def zero_chains(
    namespace: str, chains: frozenset[str], *, backend: Backend = Backend.LEGACY, nftables: bool = False
) -> None:
    """``iptables -Z <chain>`` for each chain: the kernel counters restart at zero, the
    rules (and their hashes) stay -- a reset the ledger must detect from the values alone.
    ``nftables``: the same for those chains of ``table ip calico``."""
    if nftables:
        zero_chain_counters(namespace, 4, chains)
        return
    for chain in sorted(chains):
        run_command(netns_exec_argv(namespace, [tool(4, backend, ""), "-t", "filter", "-Z", chain]))


def save_command(namespace: str, backend: Backend = Backend.LEGACY, *, nftables: bool = False) -> str:
    """The command a node agent runs to read ``namespace``'s IPv4 filter table (its
    ``table ip calico`` with ``nftables``: the agent's ``--nft-list``)."""
    if nftables:
        return list_command(namespace, 4)
    return shlex.join(netns_exec_argv(namespace, [tool(4, backend, "save"), "-c", "-t", "filter"]))
