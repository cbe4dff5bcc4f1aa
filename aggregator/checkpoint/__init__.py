"""Checkpoints: counters that continue exactly across aggregator restarts.

* :mod:`.codec`: the bytes (versioned, checksummed, decoded all-or-nothing);
* :mod:`.stores`: where they are kept (one backend per module behind one interface:
  :mod:`.file` atomically replaced on disk);
* :mod:`.keeper`: writing one every interval and at shutdown, restoring one at start,
  and the self-metrics that say how it goes.
"""
