"""``calico-accountant audit``: the questions operators ask of the counters, answered at once.

Sources (:mod:`.prometheus_source`, :mod:`.server_source`) read counters into
:class:`.model.Observations`; one pure module per report (:mod:`.canaries`,
:mod:`.unused`, :mod:`.default_deny`, :mod:`.denies`, :mod:`.changes`) finds entries in
them; :mod:`.report` puts the sections together, :mod:`.findings` decides the exit status
and :mod:`.formatting` prints table, JSON or Markdown.
"""
