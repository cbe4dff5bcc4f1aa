"""A Calico node in network namespaces, for the demo, the benchmarks and the kernel tests.

Modules, each with its own public API:

* :mod:`~calico_accountant_cli.lab.netns` -- :class:`LabNetwork`, the owner of a run's namespaces
  and processes, which deletes everything it made on exit, exceptions and signals included;
* :mod:`~calico_accountant_cli.lab.topology` -- a node namespace routing for pod namespaces wired
  the way Calico wires them (veths named ``cali<11 hex>``);
* :mod:`~calico_accountant_cli.lab.iptables` -- restore and save tables with either backend;
* :mod:`~calico_accountant_cli.lab.calico_rules` -- a felix-shaped filter table for a lab node;
* :mod:`~calico_accountant_cli.lab.host_endpoints` -- felix's host endpoint chains (hooks, host
  dispatch, failsafe, ``cali-th-``/``cali-fh-``/``cali-thfw-``/``cali-fhfw-``) for a lab node;
* :mod:`~calico_accountant_cli.lab.traffic` -- real connections and pings with exact packet counts;
* :mod:`~calico_accountant_cli.lab.probe` -- the program that runs inside a pod namespace.

Everything here needs root, ``ip`` (iproute2) and the iptables tools.
"""
