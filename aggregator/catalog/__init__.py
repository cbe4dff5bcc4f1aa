"""The catalog: lookup tables from Calico objects, (node, interface) -> pod, chain -> policy
or profile.

* :mod:`.entries`: what each datastore object contributes (pure, reused across builds);
* :mod:`.index`: the :class:`~.index.Catalog` itself, built from the entries, answering
  lookups;
* :mod:`.outcomes`: how a chain was resolved, and the tallies exported as self-metrics.
"""
