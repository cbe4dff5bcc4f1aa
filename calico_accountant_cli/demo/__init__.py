"""``calico-accountant demo``: the whole system on the bundled sample cluster.

Modules, each with its own public API; the pure ones first:

* :mod:`~calico_accountant_cli.demo.selectors` -- Calico label selectors (the subset the
  module docstring lists);
* :mod:`~calico_accountant_cli.demo.cluster` -- the sample cluster's objects as typed data,
  and as Calico stores them in etcd;
* :mod:`~calico_accountant_cli.demo.verdicts` -- what Calico decides for a packet, from the
  objects alone (the oracle the end-to-end test compares Prometheus against);
* :mod:`~calico_accountant_cli.demo.render` -- a felix-shaped filter table (and its IP sets)
  per node, v3.27 or v3.30 layout; counters carried across re-renders by rule hash;
* :mod:`~calico_accountant_cli.demo.simulate` -- packets walked through a rendered table;
* :mod:`~calico_accountant_cli.demo.plan` -- the traffic plan;
* :mod:`~calico_accountant_cli.demo.summary` -- the live screen, from the aggregator's API;

and the edges:

* :mod:`~calico_accountant_cli.demo.wiring`, :mod:`~calico_accountant_cli.demo.dataplane`,
  :mod:`~calico_accountant_cli.demo.traffic` -- namespaces, tables and real traffic (root);
* :mod:`~calico_accountant_cli.demo.store` -- the ``file:`` or etcd datastore;
* :mod:`~calico_accountant_cli.demo.supervisor` -- the aggregator and agents as processes;
* :mod:`~calico_accountant_cli.demo.replay` -- the no-root fallback an agent reads instead
  of ``iptables-save``;
* :mod:`~calico_accountant_cli.demo.run` -- the command itself.
"""
