"""Helpers the tests and benchmarks share, each written once, one concern per module.

* :mod:`.ports` -- ``free_port``: a loopback port for a server a test starts.
* :mod:`.skips` -- whether a test can run here (root, tools on PATH) and why it is skipped.
* :mod:`.waits` -- ``wait_until`` and ``async_wait_until``: poll, never sleep a fixed time.
* :mod:`.processes` -- the project processes a test starts, stopping by PID, log tails.
* :mod:`.etcd_server`, :mod:`.prometheus_server` -- a real etcd / Prometheus on loopback.
* :mod:`.dumps` -- iptables-save dumps whose counters advance; atomic file replacement.
* :mod:`.scrape` -- fetching a page and reading metric samples from an exposition.
* :mod:`.accounting` -- a fake catalog, counter records and snapshots for the accounting tests.
* :mod:`.felix_render` -- the test oracle: an independent renderer of felix's filter table.
* :mod:`.mutations` -- input mutators (dumps, protobuf messages, ingest streams) for fuzzing.
* :mod:`.fuzzing` -- the fuzz targets and their oracles, and a loopback aggregator to fuzz.
"""
