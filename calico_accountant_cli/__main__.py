"""``python -m calico_accountant_cli``: the same as the ``calico-accountant`` command."""

import sys

from calico_accountant_cli.main import main

sys.exit(main())
