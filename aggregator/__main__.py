"""``python -m aggregator``: the aggregator, the same as ``calico-accountant aggregator``."""

import sys

from aggregator.cli import main

sys.exit(main())
