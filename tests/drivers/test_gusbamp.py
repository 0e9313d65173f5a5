"""End-to-end tests of the gusbamp driver against the emulated amp (a real pyusb backend)."""

import logging
import struct
import time

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st
from reading import read_until

import ampkit
from ampkit.block import GAP_MARKER
from ampkit.drivers.gusbamp import GUSBampAmp, GUSBampCodec
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    ProtocolError,
    StateError,
)
from ampkit.protocols import gusbamp as proto
from ampkit.protocols.gusbamp import Transfer
from ampkit.registry import get_available_amps, load_driver
from ampkit.sim.gusbamp import GUSBampEmulator
from ampkit.usb import default_backend


def make(emulator=None, **config):
    """A decorated gusbamp on ``emulator`` (a new one by default)."""
    emulator = emulator or GUSBampEmulator()
    return ampkit.get_amp("gusbamp", backend=emulator, **config), emulator


collect = read_until


def trigger_markers(emulator, n):
    """The markers the trigger input of the first ``n`` frames must give."""
    values = emulator.amp.triggers(0, n)
    before = np.concatenate([[0.0], values[:-1]])
    return [(int(k), f"trigger/{int(values[k])}") for k in np.flatnonzero(values != before)]


def check_run(emulator, data, markers, columns=slice(0, 16)):
    n = len(data)
    np.testing.assert_array_equal(data, emulator.amp.frames(0, n)[:, columns])
    assert [m for m in markers if m[1].startswith("trigger/")] == trigger_markers(emulator, n)


# -- configuration ------------------------------------------------------------


def test_configuration_sequence_as_transfers():
    amp, emulator = make(fs=512, bandpass=(1.0, 40.0), notch=50, common_ground="AB",
                         common_reference=True)
    with amp:
        amp.start()
        collect(amp, 10)
        amp.stop()
    sent = emulator.amp.transfers
    assert sent[0] == Transfer(0xB8)  # an amp left streaming is stopped first
    assert sent[1:3] == [Transfer(0xC0), Transfer(0xC2, 1)]
    assert sent[3:13] == [
        Transfer(0xB6, 0x80), Transfer(0xB5, 0x80), Transfer(0xB9, 0, 0, bytes(range(1, 17))),
        Transfer(0xCD, 0), Transfer(0xD3, 1), Transfer(0xCA, 1), Transfer(0xC8, 1, 0, bytes(16)),
        Transfer(0xBF, 0b1111), Transfer(0xBE, 0b0011),
        Transfer(0xCB, 0, 0, bytes([3, 0xD0, 0x07, 0x02, 0x00, 0xFF, 0x07])),
    ]
    filters = sent[13:45]
    assert [(t.request, t.value) for t in filters] == [
        (r, ch) for ch in range(1, 17) for r in (0xC6, 0xC7)]
    assert sent[45:] == [Transfer(0xB6, 512), Transfer(0xB5, 0x08), Transfer(0xF7),
                         Transfer(0xB8)]
    # The coefficients against scipy's Butterworth design, as the amp received them.
    bp_b, bp_a = scipy.signal.butter(4, [1.0, 40.0], "bandpass", fs=512)
    notch_b, notch_a = scipy.signal.butter(2, [48.0, 52.0], "bandstop", fs=512)
    for t in filters:
        values = np.array(struct.unpack("<18d", t.data))
        b, a = (bp_b, bp_a) if t.request == 0xC6 else (notch_b, notch_a)
        np.testing.assert_allclose(values[: len(b)], b, atol=1e-12 * np.abs(b).max(), rtol=0)
        np.testing.assert_allclose(values[9 : 9 + len(a)], a, atol=1e-12 * np.abs(a).max(),
                                   rtol=0)
        assert not values[len(b) : 9].any() and not values[9 + len(a) :].any()
    assert emulator.amp.refused == []


def test_no_filters_are_null_filters_and_the_order_is_configurable():
    amp, emulator = make(fs=256, bandpass=(0.5, 30.0), bandpass_order=2, calibration="square")
    with amp:
        amp.start()
        amp.stop()
    bandpass = [t for t in emulator.amp.transfers if t.request == 0xC6]
    notch = [t for t in emulator.amp.transfers if t.request == 0xC7]
    assert all(t.data == proto.NULL_FILTER for t in notch) and len(notch) == 16
    b, a = proto.parse_filter(bandpass[0].data)
    ref_b, ref_a = scipy.signal.butter(2, [0.5, 30.0], "bandpass", fs=256)
    np.testing.assert_allclose(b[:5], ref_b, atol=1e-12)
    np.testing.assert_allclose(a[:5], ref_a, atol=1e-12)
    assert emulator.amp.calibration[0] == 1


@pytest.mark.parametrize("config,says", [
    ({"fs": 500}, "fs must be one of"),
    ({"fs": True}, "fs must be one of"),
    ({"channels": [0, 1]}, "channels must be"),
    ({"channels": [1, 1]}, "channels must be"),
    ({"channels": []}, "channels must be"),
    ({"channels": 17}, "channels must be"),
    ({"bandpass": (40, 1)}, "0 < low < high"),
    ({"bandpass": (1, 200), "fs": 256}, "half of fs=256"),
    ({"bandpass": "wide"}, "bandpass must be"),
    ({"bandpass": (1, 30), "bandpass_order": 5}, "bandpass_order"),
    ({"notch": 55}, "notch must be 50, 60"),
    ({"notch": 50, "fs": 64}, "needs fs above 104"),
    ({"mode": "test"}, "mode must be one of"),
    ({"calibration": "triangle"}, "calibration must be one of"),
    ({"common_ground": "E"}, "electrode groups"),
    ({"serial": 12}, "serial must be"),
    ({"backend": "libusb"}, "backend must be"),
    ({"scale": 0}, "scale must be"),
    ({"timeout": -1}, "timeout"),
])
def test_bad_configuration(config, says):
    with pytest.raises(ConfigurationError, match=says):
        GUSBampAmp().configure(**config)


def test_layout_without_the_amp():
    amp = GUSBampAmp()
    amp.configure(fs=1200, channels=[3, 1, 16], backend=GUSBampEmulator())
    assert amp.get_channels() == ["Ch3", "Ch1", "Ch16"]
    assert amp.get_sampling_frequency() == 1200.0
    assert amp.get_units() == ["µV"] * 3
    amp.configure(mode="impedance")
    assert amp.get_units() == ["kΩ"] * 16


# -- samples and triggers ---------------------------------------------------------


def test_exact_samples_and_triggers_as_markers():
    amp, emulator = make(fs=512)
    with amp:
        amp.start()
        data, markers = collect(amp, 600)
        amp.stop()
    check_run(emulator, data, markers)
    texts = [text for _, text in markers]
    assert texts[:4] == ["trigger/1", "trigger/0", "trigger/2", "trigger/0"]
    assert amp.get_units() == ["µV"] * 16


def test_custom_trigger_pattern_and_every_change_is_one_marker():
    pattern = [(0, 0), (3, 7), (4, 255), (9, 0), (10, 128)]
    emulator = GUSBampEmulator(trigger_pattern=pattern, trigger_period=12)
    amp, _ = make(emulator, fs=600)
    with amp:
        amp.start()
        data, markers = collect(amp, 60)
        amp.stop()
    check_run(emulator, data, markers)
    assert markers[:4] == [(3, "trigger/7"), (4, "trigger/255"), (9, "trigger/0"),
                           (10, "trigger/128")]


def test_clock_skew_is_followed():
    """The amp's crystal 0.5 % fast: the sample clock measures its real rate."""
    emulator = GUSBampEmulator(ppm=5000.0)
    amp, _ = make(emulator, fs=4800)
    with amp:
        amp.start()
        data, _ = collect(amp, 4800 * 2)
        rate = amp.amp.get_effective_rate()
        amp.stop()
    true, nominal = emulator.amp.true_rate, 4800.0
    assert abs(rate - true) < abs(true - nominal) / 5
    np.testing.assert_array_equal(data, emulator.amp.frames(0, len(data))[:, :16])


@pytest.mark.parametrize("fs", proto.SAMPLING_RATES)
def test_every_sampling_rate(fs):
    amp, emulator = make(fs=fs)
    n = max(4, fs // 8)
    with amp:
        amp.start()
        data, markers = collect(amp, n)
        amp.stop()
    check_run(emulator, data, markers)
    assert emulator.amp.fs == fs and Transfer(0xB6, fs) in emulator.amp.transfers
    assert amp.get_sampling_frequency() == fs


def test_channel_subset_in_the_order_asked():
    amp, emulator = make(fs=256, channels=[3, 1, 16])
    with amp:
        amp.start()
        data, markers = collect(amp, 100)
        amp.stop()
    assert data.shape[1] == 3 and amp.get_channels() == ["Ch3", "Ch1", "Ch16"]
    check_run(emulator, data, markers, columns=[2, 0, 15])
    # The amp still acquires all 16 (the subset is taken on the host).
    assert Transfer(0xB9, 0, 0, bytes(range(1, 17))) in emulator.amp.transfers


def test_scale():
    amp, emulator = make(fs=256, scale=0.5, channels=[2])
    with amp:
        amp.start()
        data, _ = collect(amp, 50)
        amp.stop()
    np.testing.assert_array_equal(data[:, 0], emulator.amp.frames(0, len(data))[:, 1] * 0.5)


def test_calibration_mode():
    amp, emulator = make(fs=256, mode="calibration", calibration="sine")
    with amp:
        amp.start()
        data, _ = collect(amp, 200)
        amp.stop()
    assert emulator.amp.mode == "calibration"
    assert Transfer(0xC1) in emulator.amp.transfers and Transfer(0xC2, 2) in emulator.amp.transfers
    np.testing.assert_array_equal(data, emulator.amp.frames(0, len(data))[:, :16])
    assert np.abs(data).max() == pytest.approx(250_000.0, rel=1e-3)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_split_of_the_bulk_stream_gives_the_same_samples_and_markers(data):
    emulator = GUSBampEmulator(trigger_pattern=[(0, 0), (2, 5), (3, 0), (7, 9)],
                               trigger_period=11)
    n = data.draw(st.integers(1, 60))
    columns = data.draw(st.sampled_from([list(range(16)), [4, 0], [15]]))
    raw = emulator.amp.frames(0, n).tobytes()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=25)))
    codec = GUSBampCodec("test", columns)
    chunks = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        chunks += codec.feed(memoryview(raw)[start:end])
    rows = np.concatenate([c.data for c in chunks])
    markers, row = [], 0
    for c in chunks:
        markers += [(row + r, text) for r, text in c.markers]
        row += len(c.data)
    np.testing.assert_array_equal(rows, emulator.amp.frames(0, n)[:, columns])
    assert markers == trigger_markers(emulator, n)
    assert all(c.lost == 0 for c in chunks)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 200))
def test_any_bytes_decode_without_error(raw, size):
    codec = GUSBampCodec("test", [0, 5])
    rows = markers = 0
    for start in range(0, len(raw), size):
        for chunk in codec.feed(memoryview(raw)[start : start + size]):
            rows += len(chunk.data)
            markers += len(chunk.markers)
            assert all(text.startswith("trigger/") for _, text in chunk.markers)
    assert rows == len(raw) // 68 and markers <= rows


def test_trigger_text_of_odd_values():
    values = np.zeros((4, 17), "<f4")
    values[:, 16] = [250000.0, np.nan, np.nan, 1.5]
    chunk = GUSBampCodec("test", [0]).feed(memoryview(values.tobytes()))[0]
    assert chunk.markers == [(0, "trigger/250000"), (1, "trigger/nan"), (3, "trigger/1.5")]


# -- impedance --------------------------------------------------------------------


def test_impedance_mode_in_kohm():
    impedances = np.linspace(0.5, 50.0, 16)
    emulator = GUSBampEmulator(impedances=impedances)
    amp, _ = make(emulator, fs=256, mode="impedance")
    with amp:
        amp.start()
        data, markers = collect(amp, 30)
        np.testing.assert_allclose(amp.get_impedances(), impedances, rtol=1e-4)
        with pytest.raises(StateError):
            amp.configure(mode="data")
        amp.stop()
    np.testing.assert_allclose(data, np.tile(impedances, (len(data), 1)), rtol=1e-4)
    assert markers == [] and amp.get_units() == ["kΩ"] * 16
    assert emulator.amp.transfers[1:3] == [Transfer(0xC9), Transfer(0xC2, 3)]


def test_get_impedances_measures_while_stopped_and_keeps_the_mode():
    impedances = np.arange(16) * 2.0 + 1.0
    emulator = GUSBampEmulator(impedances=impedances)
    amp, _ = make(emulator, fs=512, channels=[2, 5])
    z = amp.get_impedances()
    np.testing.assert_allclose(z, impedances[[1, 4]], rtol=1e-4)
    assert not amp.running and not emulator.amp.running
    assert emulator.amp.mode == "impedance" and amp.amp.mode == "data"
    with amp:
        amp.start()
        data, _ = collect(amp, 20)
        with pytest.raises(StateError, match="mode of its own"):
            amp.get_impedances()
        amp.stop()
    np.testing.assert_array_equal(data, emulator.amp.frames(0, len(data))[:, [1, 4]])


def test_drivers_without_impedance_say_none():
    assert ampkit.get_amp("random").get_impedances() is None


# -- errors -----------------------------------------------------------------------


def test_no_amp_lists_what_was_found():
    emulator = GUSBampEmulator(others=[(0x1D6B, 0x0002), (0x046D, 0xC52B)])
    emulator.amp.unplug()
    amp, _ = make(emulator)
    with pytest.raises(AmpNotAvailableError, match="no g.USBamp found") as info:
        amp.start()
    assert "1d6b:0002 on bus 1" in str(info.value) and "046d:c52b" in str(info.value)
    assert not amp.running and not amp.is_available()


def test_serial_number_chooses_the_amp():
    emulator = GUSBampEmulator(amps=2, serial="UA-2020.01.01")
    amp, _ = make(emulator, fs=256, serial="UA-2020.01.02")
    assert amp.is_available() and "UA-2020.01.02" in amp.amp.name
    with amp:
        amp.start()
        collect(amp, 10)
        amp.stop()
    assert emulator.amps[1].transfers and not emulator.amps[0].transfers
    wrong, _ = make(emulator, serial="UA-1999.01.01")
    assert not wrong.is_available()
    with pytest.raises(AmpNotAvailableError, match="no g.USBamp with serial 'UA-1999.01.01'; "
                       "found: UA-2020.01.01 .*, UA-2020.01.02"):
        wrong.start()


def test_permission_denied_names_the_udev_rule():
    emulator = GUSBampEmulator(vendor=0x15C3)
    emulator.amp.deny_access = True
    amp, _ = make(emulator)
    with pytest.raises(AmpNotAvailableError, match="no permission") as info:
        amp.start()
    text = str(info.value)
    assert 'ATTR{idVendor}=="15c3", ATTR{idProduct}=="0001"' in text
    assert "/etc/udev/rules.d/" in text and "udevadm" in text
    assert amp.is_available()  # it is there, only not ours to open
    serial, _ = make(emulator, serial="UA-2020.01.01")
    with pytest.raises(AmpNotAvailableError, match="no permission.*serial number.*udev"):
        serial.start()


def test_amp_in_use():
    emulator = GUSBampEmulator()
    first, _ = make(emulator, fs=256)
    second, _ = make(emulator, fs=256)
    with first, second:
        first.start()
        with pytest.raises(AmpNotAvailableError, match="in use by another program"):
            second.start()
        data, markers = collect(first, 50)
        first.stop()
        second.start()  # released by stop()
        second.stop()
    check_run(emulator, data, markers)
    emulator.amp.busy = True
    third, _ = make(emulator)
    with pytest.raises(AmpNotAvailableError, match="in use"):
        third.start()


def test_unplugged_mid_stream():
    amp, emulator = make(fs=512)
    with amp:
        amp.start()
        before, markers = collect(amp, 100)
        emulator.amp.unplug()
        rows = 0
        with pytest.raises(ConnectionLostError, match="unplugged"):
            for _ in range(100):
                rows += len(amp.get_data()[0])
        with pytest.raises(ConnectionLostError):
            amp.get_data()
        total = len(before) + rows
    assert total <= emulator.amp.frames_sent
    check_run(emulator, before, markers)


def test_reconnects_after_replugging():
    amp, emulator = make(fs=512, reconnect=True, silence_timeout=1.0)
    with amp:
        amp.start()
        collect(amp, 100)
        emulator.amp.unplug()
        time.sleep(0.3)
        emulator.amp.plug()
        data, markers = collect(amp, 400)
        assert amp.amp.reconnects == 1
        amp.stop()
    gap = GAP_MARKER.split("{")[0]
    gaps = [(row, text) for row, text in markers if text.startswith(gap)]
    assert len(gaps) == 1
    row = gaps[0][0]
    # After the gap: the new run of the amp, from its first frame.
    after = data[row:]
    np.testing.assert_array_equal(after, emulator.amp.frames(0, len(after))[:, :16])


def test_usb_timeouts_are_retried_then_reported(caplog):
    amp, emulator = make(fs=512, silence_timeout=0.5, timeout=0.2)
    emulator.amp.timeouts(2, control=True)
    with amp, caplog.at_level(logging.WARNING, "ampkit"):
        amp.start()  # two tries timed out, the third went through
        assert sum("timed out (try" in r.getMessage() for r in caplog.records) == 2
        emulator.amp.timeouts(5)  # data reads: nothing lost, it comes later
        data, markers = collect(amp, 300)
        check_run(emulator, data, markers)
        emulator.amp.hang()
        with pytest.raises(ConnectionLostError, match="no data for"):
            for _ in range(100):
                amp.get_data()
    broken, emulator = make(fs=512, timeout=0.2)
    emulator.amp.timeouts(3, control=True)
    with pytest.raises(AmpNotAvailableError, match=r"did not answer request 0xB8 \(value 0\) "
                       "in 3 tries"):
        broken.start()


def test_short_and_misaligned_reads_never_shift_a_channel():
    emulator = GUSBampEmulator(block_frames=8)
    amp, _ = make(emulator, fs=2400)
    with amp:
        amp.start()
        emulator.amp.short_reads(200)
        data, markers = collect(amp, 2400)
        amp.stop()
    check_run(emulator, data, markers)
    assert emulator.amp._short_reads < 200  # they did happen


def test_stalls():
    amp, emulator = make(fs=1200)
    with amp:
        amp.start()
        collect(amp, 50)
        emulator.amp.stall_endpoint()  # cleared by the transport, nothing lost
        data, markers = collect(amp, 600)
        amp.stop()
    assert len(data) >= 600
    emulator.amp.stall_control(0xB6)
    amp, _ = make(emulator, fs=1200)
    with pytest.raises(ProtocolError, match=r"refused request 0xB6 \(value 128\)"):
        amp.start()
    assert not amp.running
    again, _ = make(emulator, fs=1200)  # the failed start left the amp free
    with again:
        again.start()
        again.stop()


def test_state_checks():
    amp, _ = make()
    with pytest.raises(StateError):
        amp.get_data()
    with pytest.raises(StateError):
        amp.stop()
    with amp:
        amp.start()
        with pytest.raises(StateError):
            amp.start()
        amp.stop()


# -- finding it -------------------------------------------------------------------


def test_registered_under_libmushus_name():
    assert load_driver("gusbamp") is GUSBampAmp
    assert type(ampkit.get_amp("gusbamp").amp) is GUSBampAmp


def test_is_available_and_get_available_amps(monkeypatch):
    emulator = GUSBampEmulator()
    amp, _ = make(emulator)
    assert amp.is_available()
    monkeypatch.setattr(GUSBampAmp, "backend", emulator)
    assert GUSBampAmp.is_available() and "gusbamp" in get_available_amps()
    emulator.amp.unplug()
    assert not GUSBampAmp.is_available() and "gusbamp" not in get_available_amps()
    monkeypatch.setattr(GUSBampAmp, "backend", None)
    t0 = time.monotonic()
    for _ in range(5):
        GUSBampAmp.is_available()  # pyusb's own backend: libusb, or none
    assert time.monotonic() - t0 < 2.0


@pytest.mark.skipif(default_backend() is not None, reason="libusb is installed here")
def test_without_libusb_says_what_to_install():
    amp = ampkit.get_amp("gusbamp")
    with pytest.raises(AmpNotAvailableError, match="install libusb"):
        amp.start()
    assert not GUSBampAmp.is_available()


def test_emulator_by_name():
    amp = ampkit.get_amp("gusbamp", backend="emulator", fs=256)
    assert amp.is_available()
    with amp:
        amp.start()
        data, _ = collect(amp, 20)
        amp.stop()
        amp.start()  # the same emulated amp again
        amp.stop()
    assert data.shape[1] == 16


# -- recordings -------------------------------------------------------------------


def test_recording_opens_in_mne_with_the_triggers(tmp_path):
    mne = pytest.importorskip("mne")
    emulator = GUSBampEmulator()
    with ampkit.get_amp("gusbamp", backend=emulator, fs=512, channels=[1, 2, 9]) as amp:
        amp.start(filename=str(tmp_path / "usbamp"))
        n = 0
        while n < 1100:
            n += len(amp.get_block())
        amp.stop()
    raw = mne.io.read_raw_brainvision(tmp_path / "usbamp.vhdr", verbose="error")
    assert raw.ch_names == ["Ch1", "Ch2", "Ch9"] and raw.info["sfreq"] == 512
    data = raw.get_data().T * 1e6  # V -> µV
    np.testing.assert_allclose(data, emulator.amp.frames(0, len(data))[:, [0, 1, 8]],
                               rtol=1e-6)
    # BrainVision files keep texts of no type of theirs as comments.
    got = [(int(round(onset * 512)), text.removeprefix("Comment/"))
           for onset, text in zip(raw.annotations.onset, raw.annotations.description,
                                  strict=True) if text.startswith("Comment/trigger/")]
    assert got == trigger_markers(emulator, len(data))
    assert len(got) >= 8
