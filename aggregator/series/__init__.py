"""The exported series: what is exported (:mod:`.options`), the pre-aggregated values kept
up to date as counters grow (:mod:`.state`), and the copies readers get (:mod:`.views`).
The locked facade over ledger and series is :mod:`aggregator.accountant`."""
