"""The Calico datastore as seen by the aggregator.

* :mod:`.objects`: Calico objects decoded from etcd keys/values or manifests (pure);
* :mod:`.kdd_objects`: Kubernetes objects translated the way Calico derives its objects in
  KDD mode (pure), for the resource types of :mod:`.kdd_resources`;
* :mod:`.spec`: the ``--datastore`` flag, parsed (pure);
* :mod:`.cache`: the objects held in memory, and the catalogs built from them;
* :mod:`.sources`: the backends (:mod:`.file`, :mod:`.etcd`, :mod:`.kubernetes` over
  :mod:`.kube_client`) that list and follow a datastore into a cache.

Usage::

    cache = DatastoreCache(source=spec.describe())
    source = open_datastore(parse_datastore_spec("etcd://127.0.0.1:2379"), cache)
    source.start()                       # inside the running event loop
    catalog = await cache.wait_synced()  # first complete listing
    cache.add_listener(on_new_catalog)   # or: await cache.wait_for_change(cache.generation)

The package re-exports nothing, so the pure modules import without the I/O ones.
"""
