"""calico-accountant's core: what the node agent, the aggregator and the CLI share.

The counter record types (:mod:`.records`), the wire contract (:mod:`.wire` and the
generated :mod:`.v1`), and felix's chain layout and naming (:mod:`.felix`).  This package
imports nothing of the project above it: the services (:mod:`node_agent`,
:mod:`aggregator`) import it, and the application (:mod:`calico_accountant_cli`) imports
them all.
"""

__version__ = "0.1.0"
