"""The cyclic garbage collector, set for runs (the entry points call `settle()` after their
imports).

A run holds tens of thousands of parsed answers while it waits on the network, and makes them far
faster than it frees them: with the default thresholds (700, 10, 10) a run of 1,000 accounts x 20
stories spent 4.4 s of its CPU in about 2,500 collections that found little to free. The objects
made by the imports live until the exit, so they are frozen out of every later collection; young
objects are collected every 50,000 allocations instead of 700. Measured at 1,000 x 20 (the
benchmark's simulator, the collections timed by `gc.callbacks`): 4.4 s -> 0.8 s at 20,000, peak
RSS 164 -> 179 MB. 50,000 then took the collections of a run from 0.55-0.60 s to 0.26-0.33 s (3
interleaved pairs; timed one by one in one run each, the run's own collections were 7 instead of
24: 0.27 s instead of 0.59 s), peak RSS 162-171 -> 168-181 MB; 100,000 took them to
0.14-0.21 s, but with 202 MB of peak RSS.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 10)


def settle() -> None:
    """Freeze what the imports made and raise the young generation's threshold."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
