"""The online runtime of Track-On2: tracker state, step plan, the frame-by-frame driver, the Predictor, and the
fast forms of the model's functions (``runtime.fast``). It builds on ``model`` and is never imported by it."""
