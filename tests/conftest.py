"""Shared test setup, deliberately small: other helpers keep their fixtures in their own files.

It only makes the test-support modules that live next to the tests (``felix_render``)
importable, whichever way pytest was started.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
