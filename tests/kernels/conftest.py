"""Make the plain-numpy reference importable as ``reference`` from the kernel tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
