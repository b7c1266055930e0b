"""Track-On2: online point tracking with a memory-augmented transformer.

Everything lives under this package (``trackon2.model``, ``trackon2.runtime``, ``trackon2.evaluation``, ...).
The short names the project used before it was a package (``model``, ``runtime``, ``evaluation``, ...) resolve
here too where no other installed project owns them: see ``trackon2.aliases``.
"""

__version__ = "2.0.0"
