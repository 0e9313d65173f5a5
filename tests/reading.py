"""Reading an amp until enough samples came: one helper for the tests of the
streaming layer and of the driver guide's example."""

import time

import numpy as np


def read_until(amp, n, limit=10.0, fs=None):
    """Read until ``n`` samples came; return the data and the markers as
    ``(row, text)``. A decorated amp is read with ``get_block()`` (markers on
    their samples); with ``fs``, a driver with ``get_data()`` (ms to rows)."""
    datas, marks, rows = [], [], 0
    deadline = time.monotonic() + limit
    while rows < n:
        assert time.monotonic() < deadline, f"only {rows} of {n} samples within {limit} s"
        if fs is None:
            block = amp.get_block()
            data, placed = block.data, block.marker_samples()
        else:
            data, markers = amp.get_data()
            placed = [(round(ms * fs / 1000.0), text) for ms, text in markers]
        marks += [(rows + r, text) for r, text in placed]
        datas.append(data)
        rows += len(data)
    return np.concatenate(datas), marks
