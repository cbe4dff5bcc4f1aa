"""``python -m node_agent``: the node agent, the same as ``calico-accountant agent``."""

import sys

from node_agent.agent import main

sys.exit(main())
