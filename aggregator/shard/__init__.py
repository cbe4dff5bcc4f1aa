"""Sharding agents over aggregator replicas by node (``--shards``): which member owns a node
(:mod:`.ring`, pure rendezvous hashing), who the members are (:mod:`.membership`, with one
backend per module: :mod:`.etcd` leases, :mod:`.kubernetes` Leases), what ingest does about a
node this replica does not own (:mod:`.router`), and ``--shards`` to a backend (:mod:`.open`)."""
