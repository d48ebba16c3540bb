"""`python -m dualipo ...` (what `accelerate launch ... -m dualipo run ...` starts in every process)."""

import sys

from dualipo.cli import main

sys.exit(main())
