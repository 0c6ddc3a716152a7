"""`python -m hobench`: the same as the `hobench` command."""

import sys

from hobench.cli import main

if __name__ == "__main__":
    sys.exit(main())
