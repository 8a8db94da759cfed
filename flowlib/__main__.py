"""``python -m flowlib ...`` and ``torchrun -m flowlib train ...``: see :mod:`flowlib.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
