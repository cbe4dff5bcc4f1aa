"""The accounting state for Prometheus: rendering it, and serving it.

* :mod:`.text`: :func:`~.text.render_text` writes a :class:`~aggregator.series.views.StateView`
  in the Prometheus text format.  Both ``/metrics`` and ``report --format prometheus``
  use it, so a scrape and a report of the same state are the same text.
* :mod:`.serving`: :func:`~.serving.serve_metrics`, the aggregator's ``/metrics``
  endpoint on the HTTP server every calico-accountant daemon shares
  (:mod:`calico_accountant.runtime.http`).

Import from the modules; this package re-exports nothing.
"""
