"""``python -m evaluation.benchmark``: the speed and memory benchmark of ``evaluation.speed.benchmark``."""

import sys

from trackon2.evaluation.speed.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
