"""The one clock every ampkit timestamp is on.

:func:`local_clock` reads the same monotonic clock as ``pylsl.local_clock``
(liblsl uses ``std::chrono::steady_clock``: ``CLOCK_MONOTONIC`` on Linux,
``mach_absolute_time`` on macOS, ``QueryPerformanceCounter`` on Windows;
:func:`time.perf_counter` reads the same source on each). It does not import
pylsl, so reading the clock does not load liblsl, and it is comparable across
processes of the same machine.
"""

from __future__ import annotations

import time

__all__ = ["local_clock"]

local_clock = time.perf_counter
"""Seconds on the shared monotonic clock (the clock of ``pylsl.local_clock``).

An alias of :func:`time.perf_counter`, bound without a wrapper so that a
stamp costs one C call.
"""
