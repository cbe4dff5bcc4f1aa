"""Leader election: two aggregator replicas, one serving.

* :mod:`.base`: what every backend offers (:class:`~.base.Election`), this replica's
  identity, and the exit code of a leader that lost its lease;
* :mod:`.etcd`: an etcd lease and a create-if-absent key (the datastore's etcd);
* :mod:`.open`: ``--leader-election`` to a backend, refused clearly when the rest of the
  configuration cannot support it.

A Kubernetes ``coordination.k8s.io`` Lease backend would be one more module beside
:mod:`.etcd`, behind the same interface.
"""
