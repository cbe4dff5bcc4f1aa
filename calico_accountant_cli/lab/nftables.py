"""Loading and listing Calico's nftables table in a lab namespace (Debian's ``nft``; root).

What felix's nftables mode leaves on a node is ``table ip calico`` and ``table ip6
calico``; :func:`load_table` replaces one of them in one ``nft -f`` transaction (the
counters in the script included), and :func:`list_command` is what an agent runs to read
it (``--nft-list``).
"""

from __future__ import annotations

import shlex

from calico_accountant_cli.lab.netns import netns_exec_argv, run_command

__all__ = ["list_argv", "list_command", "list_table", "load_table"]


def _family_name(family: int) -> str:
    return "ip" if family == 4 else "ip6"


def load_table(namespace: str, family: int, script: str) -> None:
    """Replace ``table ip[6] calico`` in ``namespace`` by ``script`` atomically."""
    name = _family_name(family)
    reset = f"table {name} calico {{}}\ndelete table {name} calico\n"
    run_command(netns_exec_argv(namespace, ["nft", "-f", "-"]), input_text=reset + script, timeout=300.0)


def list_argv(namespace: str, family: int) -> list[str]:
    return netns_exec_argv(namespace, ["nft", "-j", "list", "table", _family_name(family), "calico"])


def list_command(namespace: str, family: int = 4) -> str:
    """The agent's ``--nft-list`` command for ``namespace``'s table of ``family``."""
    return shlex.join(list_argv(namespace, family))


def list_table(namespace: str, family: int = 4) -> str:
    """``nft -j list table ip[6] calico`` as Debian's nft prints it."""
    return run_command(list_argv(namespace, family))
