"""Validators of configuration values, shared by drivers, services and buffers.

Each returns the value in its plain Python type or raises
:class:`~ampkit.errors.ConfigurationError` naming the setting, so every
``configure()`` and ``start()`` option is refused with the same words.
"""

from __future__ import annotations

import numbers

from ampkit.errors import ConfigurationError

__all__ = ["check_positive_int", "check_positive_number"]


def check_positive_number(name: str, value: object) -> float:
    """Return ``value`` as a float, or raise ConfigurationError naming ``name``.

    Parameters
    ----------
    name : str
        The setting, as the user spells it.
    value : object
        Its value: a real number above 0 (not a bool).

    Returns
    -------
    float

    Raises
    ------
    ampkit.errors.ConfigurationError
        Not a number, a bool, or not above 0.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int, or raise ConfigurationError naming ``name``.

    Parameters
    ----------
    name : str
        The setting, as the user spells it.
    value : object
        Its value: an integer of at least 1 (not a bool).

    Returns
    -------
    int

    Raises
    ------
    ampkit.errors.ConfigurationError
        Not an integer, a bool, or below 1.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
