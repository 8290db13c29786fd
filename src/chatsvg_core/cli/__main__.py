"""``python -m chatsvg_core.cli``."""

from __future__ import annotations

import sys

from chatsvg_core.cli import main

sys.exit(main())
