"""ampkit: one small contract for every EEG/biosignal amplifier.

The public API::

    import ampkit
    amp = ampkit.get_amp('random', fs=250, channels=8)
    amp.start()
    data, markers = amp.get_data()
    amp.stop()

Scripts written for libmushu run with ``import ampkit as libmushu``.
"""

from __future__ import annotations

from ampkit import errors, io
from ampkit.amplifier import Amplifier
from ampkit.block import Block
from ampkit.buffer import AmpWatcher, RingBuffer, StreamWatcher
from ampkit.clock import local_clock
from ampkit.decorator import AmpDecorator
from ampkit.registry import get_amp, get_available_amps
from ampkit.shared.reader import attach

__version__ = "0.1.0"

__all__ = [
    "Amplifier",
    "AmpDecorator",
    "AmpWatcher",
    "attach",
    "Block",
    "errors",
    "io",
    "get_amp",
    "get_available_amps",
    "local_clock",
    "RingBuffer",
    "StreamWatcher",
    "__version__",
]
