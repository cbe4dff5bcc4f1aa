"""Leader election: two aggregator replicas, one serving.

* :mod:`.base`: what every backend offers (:class:`~.base.Election`), this replica's
  identity, and the exit code of a leader that lost its lease;
* :mod:`.etcd`: an etcd lease and a create-if-absent key (the datastore's etcd);
* :mod:`.kubernetes`: a ``coordination.k8s.io`` Lease (the Kubernetes API datastore);
* :mod:`.open`: ``--leader-election`` to a backend, refused clearly when the rest of the
  configuration cannot support it.
"""
