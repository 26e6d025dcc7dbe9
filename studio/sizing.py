"""What the app's memory holds, as the budget counts it: a stored result (the run
store's cost) and a queued job (the queue's). Plain Python, no Streamlit."""
from __future__ import annotations

import numpy as np


def result_bytes(value) -> int:
    """What a stored result costs: its own ``nbytes``, else the numpy arrays among its
    fields (and in its fields' dicts), which hold nearly all of its memory."""
    nbytes = getattr(value, "nbytes", None)
    if nbytes is not None:
        return int(nbytes)
    total = 4096
    for field in vars(value).values() if hasattr(value, "__dict__") else ():
        items = field.values() if isinstance(field, dict) else (field,)
        total += sum(item.nbytes for item in items if isinstance(item, np.ndarray))
    return total


def payload_bytes(payload) -> int:
    """Memory a queued job holds: its image (and a teaching rerun's record)."""
    total = 0
    for value in payload.values() if isinstance(payload, dict) else ():
        total += int(getattr(value, "nbytes", 0) or 0)
    return total
