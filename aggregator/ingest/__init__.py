"""The ``Ingest`` gRPC service: node agents stream snapshots in, acknowledgements go out.

* :mod:`.servicer`: the stream rules (who may report for which node, chunk reassembly,
  sequence, supersession) and the hand-over to the accounting state;
* :mod:`.limits`: what one peer or all of them may hold open at once (streams, bytes of
  unfinished snapshots), so no client can grow the aggregator without bound;
* :mod:`.metrics`: ``calico_accountant_ingest_*``.
"""
