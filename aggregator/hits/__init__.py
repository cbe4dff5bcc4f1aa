"""The policy-hit API: ``Watch`` fan-out, ``Snapshot``, ``ListNodes``, ``ServerStatus``.

A *hit* is the increase of one resolved counter between two snapshots of a node.  Ingest
hands every applied snapshot's increases to the hub, which keeps a recent window for
``since`` replays and offers them to every ``Watch`` stream; the servicer answers the
RPCs from the hub and from the accountant's totals.

One concern per module, imported from the module itself (this package re-exports
nothing):

* :mod:`.convert`: a resolved counter as a ``Hit`` message, and the names a ``policy``
  filter may use for it;
* :mod:`.filters`: :class:`~.filters.HitFilterSpec`, a validated ``HitFilter``;
* :mod:`.hub`: :class:`~.hub.HitHub`, the window and the per-stream bounded buffers that
  keep a slow consumer from slowing ingest, and :class:`~.hub.HitMetrics`;
* :mod:`.servicer`: :class:`~.servicer.PolicyHitsServicer`, the gRPC service, and the
  :class:`~.servicer.HitsState` it reads totals and nodes from.

The hub and the servicer import the conversion and the filters; nothing here imports
the servicer.
"""
