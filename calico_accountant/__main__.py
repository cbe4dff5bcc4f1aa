"""``python -m calico_accountant``: the same as the ``calico-accountant`` command."""

import sys

from calico_accountant.cli import main

sys.exit(main())
