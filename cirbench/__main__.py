"""``python -m cirbench``: the command line (also what ``torchrun -m cirbench`` launches)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
