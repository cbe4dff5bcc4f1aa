"""The Calico datastore as seen by the aggregator: objects, a cache that builds catalogs, sources.

Public API::

    from aggregator.datastore import (
        CalicoObject, DatastoreCache, DatastoreStatus, parse_datastore_spec, open_datastore,
    )

    cache = DatastoreCache(source=spec.describe())
    source = open_datastore(parse_datastore_spec("etcd://127.0.0.1:2379"), cache)
    source.start()                       # inside the running event loop
    catalog = await cache.wait_synced()  # first complete listing
    cache.add_listener(on_new_catalog)   # or: await cache.wait_for_change(cache.generation)

The etcd source (and gRPC) is imported only when an etcd spec is opened.
"""

from aggregator.datastore.cache import CatalogListener, DatastoreCache, DatastoreStatus
from aggregator.datastore.objects import (
    RESOURCE_PREFIX,
    RESOURCE_TYPES,
    BadObject,
    CalicoObject,
    DecodeResult,
    ResourceType,
    decode_documents,
    object_from_etcd,
    object_from_manifest,
    resource_key,
)
from aggregator.datastore.spec import (
    DatastoreSource,
    DatastoreSpec,
    EtcdEndpoint,
    EtcdSpec,
    FileSpec,
    TlsFiles,
    open_datastore,
    parse_datastore_spec,
)

__all__ = [
    "RESOURCE_PREFIX",
    "RESOURCE_TYPES",
    "BadObject",
    "CalicoObject",
    "CatalogListener",
    "DatastoreCache",
    "DatastoreSource",
    "DatastoreSpec",
    "DatastoreStatus",
    "DecodeResult",
    "EtcdEndpoint",
    "EtcdSpec",
    "FileSpec",
    "ResourceType",
    "TlsFiles",
    "decode_documents",
    "object_from_etcd",
    "object_from_manifest",
    "open_datastore",
    "parse_datastore_spec",
    "resource_key",
]
