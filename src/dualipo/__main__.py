"""`python -m dualipo ...` (what `accelerate launch ... -m dualipo run ...` starts in every process)."""

import sys

from dualipo.cli import main

if __name__ == "__main__":  # importing the module (as tests that walk the package do) runs nothing
    sys.exit(main())
