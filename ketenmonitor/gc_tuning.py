"""CPython's cyclic garbage collector, fitted to the long batch jobs of this project.

    tune_garbage_collector(settings.gc_young_threshold)   # once start-up is done

The stream worker (streams/worker.py), `publish`, `import-log` and `simulate` call it after their
start-up; KETENMONITOR_GC_YOUNG_THRESHOLD sets the threshold (0: Python's own settings).
"""

from __future__ import annotations

import gc


def tune_garbage_collector(young_threshold: int) -> None:
    """Fit CPython's cyclic garbage collector to a stream worker, once it has started.

    Every event makes dozens of container objects (the case state, its facts, the step) that
    stay alive until Kafka acknowledges their batch. With Python's default threshold (a young
    collection every 700 new objects) they are traversed by many young collections, promoted,
    and then trigger full collections, which traverse every live object: measured on the
    national replay, 36 full collections took 6 of the worker's 19 CPU-seconds. Collecting the
    young generation every `young_threshold` new objects lets most of them die before they are
    looked at. `gc.freeze()` first moves what start-up made (modules, classes, the chain, the
    settings: ~80,000 objects) out of every later collection. The partner-side commands make a
    few objects per row that live until their batch is sent: the same holds, less (import-log
    to a file: 16.0 -> 13.6-14.5 CPU-seconds). 0: Python's own settings."""
    if young_threshold == 0:
        return
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, oldest)
