"""Sharding agents over aggregator replicas by node: who is a member (:mod:`.membership`,
:mod:`.etcd`), which member owns a node (:mod:`.ring`, pure), and what ingest does about a
node it does not own (:mod:`.router`)."""
