"""Speed tooling: the frames/s and memory benchmark, stage timing and steady-state starts."""
