"""The ``calico-accountant`` command: the application layer on top of everything else.

Its subcommands (:mod:`.commands`) run the node agent and the aggregator, parse and report
offline, and follow the policy-hit API (:mod:`.hits_client`); :mod:`.demo` runs the whole
system on a sample cluster and :mod:`.lab` builds the network namespaces the demo and the
kernel tests use.  Nothing below this package imports it.
"""
