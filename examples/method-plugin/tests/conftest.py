"""Make the plug-in importable from this folder when it is not pip-installed (the stf-bench suite runs it so)."""

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
