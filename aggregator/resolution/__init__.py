"""Attaching the datastore's names to counters.

* :mod:`.resolve`: one counter's names, from a :class:`~.resolve.Resolver` (the catalog),
  never losing the counter when a lookup fails (pure);
* :mod:`.memo`: the distinct lookups a cluster's counters make, cached with the counters
  that made them, so a catalog change re-routes only the counters whose names changed;
* :mod:`.runs`: the counters of one workload's chain resolved once, not once each.
"""
