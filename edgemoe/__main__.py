"""``python -m edgemoe``: the ``edgemoe`` command line (same commands, same exit statuses)."""
import sys

from edgemoe.cli import main

sys.exit(main())
