"""Counter records <-> the v1 wire messages, pure: both ends of the ingest stream use this
package, so the encoding, the "what changed" rule and the chunking rule live once.

* :mod:`.bounds`: the limits every message is held to, and :class:`~.bounds.WireError`;
* :mod:`.counters`: one counter to a message and back (the decoding side validates: it
  reads what another process sent);
* :mod:`.delta`: which counters changed or vanished between two reads;
* :mod:`.snapshots`: a snapshot message from records, and a whole one decoded into the
  aggregator's input (:class:`~.snapshots.DecodedSnapshot`);
* :mod:`.chunks`: a snapshot as chunks that each fit a message size limit, and back.

No I/O and no clocks here: times are passed in.
"""
