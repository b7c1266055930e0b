"""Training of Track-On2 on MOVi-F: the loop, its schedule, checkpoints, logging and distributed setup.

``main.py`` is the entry point; ``training.trainer.run(args)`` is the whole training job.
"""
