"""calico-accountant: Calico policy accounting for Prometheus.

Shared pieces live here: the counter record types (:mod:`.records`), the generated wire
contract (:mod:`.v1`), and the command line (:mod:`.cli`).  The node agent is
:mod:`node_agent`, the aggregator :mod:`aggregator`.
"""

__version__ = "0.1.0"
