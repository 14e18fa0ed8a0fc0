"""`python3 -m waa_emu [entry.sh flags]`: the container's PID 1 (exec'd by entry.sh)."""
from __future__ import annotations

import sys

from .main import main

if __name__ == "__main__":
    main(sys.argv[1:])
