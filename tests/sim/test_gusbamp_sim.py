"""Tests of the g.USBamp emulator (ampkit.sim.gusbamp) through pyusb itself."""

import array
import errno
import re
import threading
import time

import numpy as np
import pytest
import usb.core
import usb.util

from ampkit.clock import local_clock
from ampkit.errors import ConfigurationError
from ampkit.protocols import gusbamp as proto
from ampkit.protocols.gusbamp import Transfer
from ampkit.sim.gusbamp import DEFAULT_SERIAL, GUSBampEmulator


def find(emulator, **fields):
    return usb.core.find(idProduct=1, backend=emulator, **fields)


def started(emulator, fs=512, mode="data"):
    """A pyusb device, configured as the driver does and streaming."""
    device = find(emulator)
    device.set_configuration()
    usb.util.claim_interface(device, 0)
    for t in proto.setup_transfers(fs, mode):
        assert device.ctrl_transfer(0x40, t.request, t.value, t.index, t.data) == len(t.data)
    device.set_interface_altsetting(0, proto.ALT_STREAM)
    for t in proto.START:
        device.ctrl_transfer(0x40, t.request, t.value, t.index, t.data)
    return device


def read_frames(device, n, size=4096, timeout=2.0):
    """Read until ``n`` whole frames came: their bytes, and the read sizes."""
    buf, raw, sizes = array.array("B", bytes(size)), bytearray(), []
    deadline = time.monotonic() + timeout
    while len(raw) < n * proto.FRAME_BYTES:
        assert time.monotonic() < deadline, f"{len(raw)} bytes in {timeout} s"
        got = device.read(proto.ENDPOINT, buf, 500)
        sizes.append(got)
        raw += buf[:got].tobytes()
    return bytes(raw), sizes


def check_frames(emulator, raw):
    """``raw`` is the amp's stream from its first frame (up to a partial last
    frame); returns the frames."""
    n = len(raw) // proto.FRAME_BYTES
    frames = np.frombuffer(raw[: n * proto.FRAME_BYTES], "<f4").reshape(n, 17)
    np.testing.assert_array_equal(frames, emulator.amp.frames(0, n))
    return frames


def usb_errno(info):
    return info.value.errno


def test_descriptors_and_strings():
    emulator = GUSBampEmulator(others=[(0x1D6B, 0x0002)])
    everything = list(usb.core.find(find_all=True, backend=emulator))
    assert [(d.idVendor, d.idProduct) for d in everything] == [(0x1D6B, 2), (0x153C, 1)]
    device = find(emulator)
    assert device.serial_number == DEFAULT_SERIAL
    assert device.product == "g.USBamp"
    assert device.manufacturer.startswith("g.tec")
    config = device[0]
    settings = [(i.bInterfaceNumber, i.bAlternateSetting, [e.bEndpointAddress for e in i])
                for i in config]
    assert settings == [(0, 0, []), (0, 1, [0x86])]
    endpoint = config[(0, 1)][0]
    assert usb.util.endpoint_direction(endpoint.bEndpointAddress) == usb.util.ENDPOINT_IN
    assert usb.util.endpoint_type(endpoint.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK


def test_second_vendor_id_and_several_amps():
    emulator = GUSBampEmulator(vendor=0x15C3, amps=2, serial="UB-2011.05.09")
    found = list(usb.core.find(find_all=True, idVendor=0x15C3, backend=emulator))
    assert [d.serial_number for d in found] == ["UB-2011.05.09", "UB-2011.05.10"]
    assert len({d.address for d in found}) == 2
    with pytest.raises(ConfigurationError, match="vendor ID"):
        GUSBampEmulator(vendor=0x1234)


def test_records_the_transfers_it_takes():
    emulator = GUSBampEmulator()
    started(emulator, fs=1200)
    amp = emulator.amp
    assert amp.transfers == proto.setup_transfers(1200) + list(proto.START)
    assert amp.fs == 1200 and amp.mode == "data" and amp.running
    assert amp.refused == []


@pytest.mark.parametrize("transfer,why", [
    (Transfer(0xB6, 1000), "no sampling rate 1000"),
    (Transfer(0xAA), "unknown request"),
    (Transfer(0xC2, 4), "mode must be"),
    (Transfer(0xC6, 17, 0, proto.NULL_FILTER), "channel must be 1..16"),
    (Transfer(0xC6, 1, 0, proto.NULL_FILTER[:-8]), "144 bytes"),
    (Transfer(0xC7, 1, 0, proto.filter_payload([0.5], [0.0])), "a\\[0\\] != 0"),
    (Transfer(0xC6, 1, 0, b"\0" * 8 + b"\xff" * 8 * 17), "finite"),
    (Transfer(0xB9, 0, 0, bytes([1, 1])), "distinct"),
    (Transfer(0xB9, 0, 0, bytes([17])), "distinct"),
    (Transfer(0xBE, 16), "group mask"),
    (Transfer(0xCB, 0, 0, bytes([9, 0, 0, 2, 0, 0xFF, 7])), "out of range"),
    (Transfer(0xB5, 3), "0x80 or 0x08"),
    (Transfer(0xF7), "start needs"),
    (Transfer(0xCD, 0, 0, b"x"), "no payload"),
    (Transfer(0xB6, 256, 1), "wIndex"),
])
def test_refuses_what_it_cannot_take(transfer, why):
    emulator = GUSBampEmulator()
    device = find(emulator)
    with pytest.raises(usb.core.USBError) as info:
        device.ctrl_transfer(0x40, transfer.request, transfer.value, transfer.index,
                             transfer.data)
    assert usb_errno(info) == errno.EPIPE
    assert emulator.amp.refused[-1][0] == transfer
    assert re.search(why, emulator.amp.refused[-1][1])
    assert emulator.amp.transfers == []


def test_refuses_setup_while_streaming_and_a_vendor_read():
    emulator = GUSBampEmulator()
    device = started(emulator)
    with pytest.raises(usb.core.USBError):
        device.ctrl_transfer(0x40, 0xB6, 256)
    assert emulator.amp.refused[-1][1] == "setup while streaming"
    with pytest.raises(usb.core.USBError):
        device.ctrl_transfer(0xC0, 0xB6, 256, 0, 4)
    device.ctrl_transfer(0x40, 0xB8)
    assert not emulator.amp.running
    device.ctrl_transfer(0x40, 0xB6, 256)


def test_streams_exact_frames_in_blocks():
    emulator = GUSBampEmulator(block_frames=8)
    device = started(emulator, fs=512)
    raw, sizes = read_frames(device, 100)
    frames = check_frames(emulator, raw)
    assert all(s % (8 * proto.FRAME_BYTES) == 0 for s in sizes)
    # Channel c is 100 c plus a ramp of 1/1024 per frame; the trigger its pattern.
    assert frames[3, 4] == np.float32(500 + 3 / 1024)
    assert frames[0, 16] == 1.0 and frames[-1, 16] == 0.0


def test_paced_at_its_rate_and_off_by_ppm():
    for ppm in (0.0, 10000.0):
        emulator = GUSBampEmulator(ppm=ppm, block_frames=1)
        device = started(emulator, fs=4800)
        amp = emulator.amp
        assert amp.true_rate == 4800 * (1 + ppm * 1e-6)
        time.sleep(0.3)
        before = local_clock()
        got = device.read(proto.ENDPOINT, array.array("B", bytes(2**20)), 500)
        after = local_clock()
        n = got // proto.FRAME_BYTES
        # Every frame due when the read began came, none that was not due at its end.
        due = [int((t - amp._t0) * amp.true_rate) for t in (before, after)]
        assert due[0] <= n <= due[1]
        assert amp.sample_time(n - 1) <= after
        assert 0.25 * 4800 < n < 3 * 4800


def test_clock_skew_changes_the_rate_not_the_values():
    fast, nominal = GUSBampEmulator(ppm=500.0), GUSBampEmulator()
    assert fast.amp.true_rate == pytest.approx(128 * 1.0005)
    np.testing.assert_array_equal(fast.amp.frames(0, 50), nominal.amp.frames(0, 50))


def test_trigger_patterns():
    amp = GUSBampEmulator(trigger_pattern=[(5, 3), (7, 0), (12, 255)], trigger_period=20).amp
    assert amp.triggers(0, 25).tolist() == (
        [0] * 5 + [3] * 2 + [0] * 5 + [255] * 8 + [0] * 5)
    default = GUSBampEmulator().amp
    default.fs = 256
    values = default.triggers(0, 8 * 128)
    changes = np.flatnonzero(np.diff(values)) + 1
    assert values[0] == 1 and sorted(set(values.tolist())) == list(range(9))
    assert changes.tolist()[:3] == [12, 128, 140]


def test_impedance_and_calibration_modes():
    emulator = GUSBampEmulator(impedances=np.arange(16) + 0.5)
    device = started(emulator, mode="impedance")
    raw, _ = read_frames(device, 2)
    frames = np.frombuffer(raw, "<f4").reshape(-1, 17)
    np.testing.assert_allclose(proto.impedance_kohm(frames[0, :16]), np.arange(16) + 0.5,
                               rtol=1e-5)
    amp = GUSBampEmulator().amp
    amp.mode, amp.fs = "calibration", 256
    for shape, code in proto.WAVE_SHAPES.items():
        amp.calibration = (code, 2000, 2, 2047)
        wave = amp.frames(0, 256)[:, 0]
        assert np.abs(wave).max() <= 250_000.0, shape
        assert np.all(amp.frames(0, 256)[:, :16] == wave[:, None])
    amp.calibration = (3, 2000, 2, 2047)
    sine = amp.frames(0, 256)[:, 5]
    assert sine[32] == pytest.approx(250_000.0, rel=1e-6)  # a quarter of a 2 Hz period


def test_unplug_and_plug():
    emulator = GUSBampEmulator()
    device = started(emulator)
    read_frames(device, 1)
    emulator.amp.unplug()
    with pytest.raises(usb.core.USBError) as info:
        device.read(proto.ENDPOINT, 64, 100)
    assert usb_errno(info) == errno.ENODEV
    assert find(emulator) is None
    emulator.amp.plug()
    again = find(emulator)
    assert again.address != device.address and not emulator.amp.running
    with pytest.raises(usb.core.USBError):
        device.ctrl_transfer(0x40, 0xB8)  # the old handle stays dead


def test_unplug_ends_a_waiting_read_at_once():
    emulator = GUSBampEmulator()
    device = started(emulator)
    device.ctrl_transfer(0x40, 0xB8)  # nothing comes now
    timer = threading.Timer(0.1, emulator.amp.unplug)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(usb.core.USBError):
        device.read(proto.ENDPOINT, 64, 5000)
    assert time.monotonic() - t0 < 2.0
    timer.join()


def test_stalled_endpoint_until_cleared_loses_nothing():
    emulator = GUSBampEmulator(block_frames=4)
    device = started(emulator)
    first, _ = read_frames(device, 4)
    emulator.amp.stall_endpoint()
    for _ in range(2):
        with pytest.raises(usb.core.USBError) as info:
            device.read(proto.ENDPOINT, 4096, 100)
        assert usb_errno(info) == errno.EPIPE
    device.clear_halt(proto.ENDPOINT)
    rest, _ = read_frames(device, 20)
    check_frames(emulator, first + rest)


def test_stalled_control_transfer():
    emulator = GUSBampEmulator()
    device = find(emulator)
    emulator.amp.stall_control(0xB6)
    device.ctrl_transfer(0x40, 0xB5, 0x80)  # another request passes
    with pytest.raises(usb.core.USBError) as info:
        device.ctrl_transfer(0x40, 0xB6, 256)
    assert usb_errno(info) == errno.EPIPE
    assert emulator.amp.refused[-1][1] == "stall injected"
    device.ctrl_transfer(0x40, 0xB6, 256)


def test_short_reads_split_frames_but_lose_nothing():
    emulator = GUSBampEmulator(block_frames=16)
    device = started(emulator, fs=2400)
    emulator.amp.short_reads(10)
    raw, sizes = read_frames(device, 200)
    assert sum(1 for s in sizes[:10] if s % 68) == 10
    check_frames(emulator, raw)


def test_timeouts():
    emulator = GUSBampEmulator()
    device = started(emulator)
    emulator.amp.timeouts(2)
    for _ in range(2):
        with pytest.raises(usb.core.USBTimeoutError):
            device.read(proto.ENDPOINT, 4096, 50)
    read_frames(device, 1)
    emulator.amp.timeouts(1, control=True)
    with pytest.raises(usb.core.USBTimeoutError):
        device.ctrl_transfer(0x40, 0xB8, timeout=50)
    device.ctrl_transfer(0x40, 0xB8)
    emulator.amp.hang()
    with pytest.raises(usb.core.USBTimeoutError):
        device.read(proto.ENDPOINT, 4096, 50)


def test_permission_denied_and_busy():
    emulator = GUSBampEmulator()
    emulator.amp.deny_access = True
    device = find(emulator)  # found without permission, as on Linux
    with pytest.raises(usb.core.USBError) as info:
        device.set_configuration()
    assert usb_errno(info) == errno.EACCES
    emulator.amp.deny_access = False
    first, second = find(emulator), find(emulator)
    first.set_configuration()
    usb.util.claim_interface(first, 0)
    with pytest.raises(usb.core.USBError) as info:
        usb.util.claim_interface(second, 0)
    assert usb_errno(info) == errno.EBUSY
    usb.util.dispose_resources(first)
    usb.util.claim_interface(second, 0)
    usb.util.dispose_resources(second)
    emulator.amp.busy = True
    with pytest.raises(usb.core.USBError) as info:
        usb.util.claim_interface(find(emulator), 0)
    assert usb_errno(info) == errno.EBUSY


def test_read_without_streaming_times_out():
    emulator = GUSBampEmulator()
    device = find(emulator)
    device.set_configuration()
    device.set_interface_altsetting(0, 1)
    with pytest.raises(usb.core.USBTimeoutError):
        device.read(proto.ENDPOINT, 4096, 50)
    device.set_interface_altsetting(0, 0)
    with pytest.raises(ValueError, match="Invalid endpoint"):
        device.read(proto.ENDPOINT, 4096, 50)  # pyusb: no such endpoint in setting 0
