"""Track a video file or a live source (see trackon2/demo.py). Same as ``python -m trackon2.demo``."""

import sys

from trackon2.demo import main

if __name__ == "__main__":
    sys.exit(main())
