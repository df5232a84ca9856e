"""flight: a radiation-tolerant onboard compute runtime.

Importing the package is cheap on purpose: submodules (vote, memory, scrub, ...) are imported
by whoever needs them, so a partition that only votes never pays for numba.
"""

__version__ = "0.1.0"
