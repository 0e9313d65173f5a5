"""Units: their spellings, and their size in SI units (what to_mne multiplies by)."""

from ampkit.io.units import is_voltage, normalise_unit, si_scale


def test_units():
    assert [normalise_unit(u) for u in ["uV", "μV", "\xc2µV", "microvolts", "mV", "BS"]] == [
        "µV", "µV", "µV", "µV", "mV", "BS"]
    assert [si_scale(u) for u in ["µV", "uV", "mV", "V", "nV", "µS", "S", "ARU", "°C"]] == [
        1e-6, 1e-6, 1e-3, 1.0, 1e-9, 1e-6, 1.0, 1.0, 1.0]
    assert [is_voltage(u) for u in ["µV", "V", "millivolts", "µS", "", "C"]] == [
        True, True, True, False, False, False]
