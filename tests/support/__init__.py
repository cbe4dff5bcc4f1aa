"""Helpers the tests and benchmarks share, each written once, one concern per module.

* :mod:`.ports` -- ``free_port``: a loopback port for a server a test starts.
* :mod:`.skips` -- whether a test can run here (root, tools on PATH) and why it is skipped.
* :mod:`.waits` -- ``wait_until`` and ``async_wait_until``: poll, never sleep a fixed time.
* :mod:`.processes` -- the project processes a test starts, stopping by PID, log tails.
* :mod:`.etcd_server`, :mod:`.prometheus_server` -- a real etcd / Prometheus on loopback;
  :mod:`.etcd_cluster` -- a few etcd members, to take the leader away from one.
* :mod:`.pki` -- throwaway CAs and certificates (expired ones too) as PEM files.
* :mod:`.dumps` -- iptables-save dumps whose counters advance (or made up for the zeroed
  samples); atomic file replacement.
* :mod:`.streaming` -- nodes whose dumps advance, the exact totals they add up to, a
  ``PolicyHits`` reader (plaintext or TLS), an aggregator process started and answering.
* :mod:`.scrape` -- fetching a page (http or https, basic auth) and reading metric samples.
* :mod:`.tokens` -- a stand-in ServiceAccount token issuer: keys, tokens, its key set as file or URL.
* :mod:`.kube_api` -- a protocol-faithful stand-in for kube-apiserver's list/watch (NOT a
  kube-apiserver: HTTPS, bearer token, paging, chunked watch streams, bookmarks, 410, 429, cut
  connections), over :mod:`.kube_store` (versioned objects, compaction, field selectors) and
  :mod:`.kube_http` (TLS, token, Status errors, chunked streams) and :mod:`.kube_writes`
  (single objects read and written on resourceVersion preconditions: Leases, ConfigMaps);
  :mod:`.kube_objects` -- Kubernetes objects shaped like real API output, and the demo's sample
  cluster as a KDD cluster.
* :mod:`.accounting` -- a fake catalog, counter records and snapshots for the accounting tests.
* :mod:`.felix_render` -- the test oracle: an independent renderer of felix's filter table.
* :mod:`.mutations` -- input mutators (dumps, protobuf messages, ingest streams) for fuzzing.
* :mod:`.fuzzing` -- the fuzz targets and their oracles, and a loopback aggregator to fuzz.
"""
