"""The Track-On-R verifier: a learned scorer that picks, frame by frame, the best of several trackers' tracks."""

from model.verifier.config import VerifierConfig
from model.verifier.verifier import Verifier

__all__ = ["Verifier", "VerifierConfig"]
