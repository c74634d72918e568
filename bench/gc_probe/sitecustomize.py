"""Imported by every Python process started with bench/gc_probe on PYTHONPATH (README.md here):
with GC_EXPERIMENT set, times each collection and applies the mode's collector settings."""

import gc
import json
import os
import threading
import time

_mode = os.environ.get("GC_EXPERIMENT")
_out = os.environ.get("GC_EXPERIMENT_OUT")
if _mode is not None and _out:
    stats = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}  # generation -> [collections, seconds]
    started = [0.0]

    def _timed(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            entry = stats[info["generation"]]
            entry[0] += 1
            entry[1] += time.thread_time() - started[0]

    gc.callbacks.append(_timed)

    def _apply() -> None:
        time.sleep(4)  # after the worker's imports and start-up
        if "freeze" in _mode:
            gc.freeze()
        threshold = list(gc.get_threshold())
        for part in _mode.split("+"):
            for generation in range(3):
                if part.startswith(f"g{generation}="):
                    threshold[generation] = int(part[3:])
        gc.set_threshold(*threshold)
        while True:
            with open(_out, "w") as out:
                json.dump({"mode": _mode, "stats": stats, "count": gc.get_count(),
                           "threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                           "tracked": len(gc.get_objects())}, out)
            time.sleep(2)

    threading.Thread(target=_apply, daemon=True).start()
