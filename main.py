"""Train Track-On2 (see trackon2/train.py); also under torchrun. Same as ``python -m trackon2.train``."""

import sys

from trackon2.train import main

if __name__ == "__main__":
    sys.exit(main())
