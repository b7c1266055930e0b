"""The Track-On-R verifier: a learned scorer that picks, frame by frame, the best of several trackers' tracks."""

from trackon2.model.verifier.checkpoint import build_verifier
from trackon2.model.verifier.config import VerifierConfig
from trackon2.model.verifier.ensemble import VerifierEnsemble
from trackon2.model.verifier.ensemble_tracker import EnsembleResult, EnsembleTracker
from trackon2.model.verifier.verifier import Verifier

__all__ = ["EnsembleResult", "EnsembleTracker", "Verifier", "VerifierConfig", "VerifierEnsemble", "build_verifier"]
