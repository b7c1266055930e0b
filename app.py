"""The web app (see trackon2/app.py). Same as ``python -m trackon2.app``."""

import sys

from trackon2.app import main

if __name__ == "__main__":
    sys.exit(main())
