"""Physical units of recorded channels: their size in SI units.

Recordings store each channel in its own unit (``µV``, ``mV``, ``V``, ``µS``,
...). :func:`si_scale` says how many SI units one of them is, which is what
:meth:`ampkit.io.Recording.to_mne` multiplies by (MNE keeps volts, siemens,
...). Units it does not know (``ARU``, ``°C``, ``BS``) are taken as they are
(factor 1), as MNE does.
"""

from __future__ import annotations

__all__ = ["si_scale", "is_voltage", "normalise_unit"]

_PREFIX = {"": 1.0, "k": 1e3, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "n": 1e-9,
           "p": 1e-12}
_BASES = ("V", "S", "A", "T")  # volt, siemens, ampere, tesla
# LSL's meta-data conventions spell units out.
_WORDS = {"volts": "V", "millivolts": "mV", "microvolts": "µV", "nanovolts": "nV"}


def normalise_unit(unit: str) -> str:
    """``unit`` with the micro sign spelled ``µ`` and stray encoding bytes removed.

    ``uV`` (EDF's ASCII spelling), ``μV`` (Greek mu) and ``microvolts``
    (LSL's spelling) become ``µV``; a ``Â`` left by UTF-8 read as Latin-1 is
    dropped (as MNE does).
    """
    unit = unit.strip().replace("\xc2", "")
    if unit.lower() in _WORDS:
        return _WORDS[unit.lower()]
    if len(unit) >= 2 and unit[0] in "uμ" and unit[1:] in _BASES:
        return "µ" + unit[1:]
    return unit


def _split(unit: str) -> tuple[float, str] | None:
    unit = normalise_unit(unit)
    for base in _BASES:
        if unit.endswith(base) and unit[: -len(base)] in _PREFIX:
            return _PREFIX[unit[: -len(base)]], base
    return None


def si_scale(unit: str) -> float:
    """How many SI units one ``unit`` is (``'µV'`` -> 1e-6; unknown units -> 1)."""
    split = _split(unit)
    return split[0] if split is not None else 1.0


def is_voltage(unit: str) -> bool:
    """Whether ``unit`` is a voltage (``V`` with or without a prefix)."""
    split = _split(unit)
    return split is not None and split[1] == "V"
