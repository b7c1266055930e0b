"""The randomness of a dataset item.

A dataset item draws one 63-bit seed from torch's RNG (``item_rng``) and does all of its own sampling and
augmentation with a numpy ``Generator`` built from it. The training loader (``training.data_stream``) seeds torch's
RNG per item from (seed, epoch, index), so an item's draws do not depend on the process or worker that loads it.
"""

from __future__ import annotations

import numpy as np
import torch


def item_rng() -> np.random.Generator:
    """A fresh numpy Generator seeded from torch's RNG."""
    return np.random.default_rng(int(torch.randint(0, 2**63 - 1, (1,)).item()))
