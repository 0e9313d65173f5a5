"""Recordings killed with SIGKILL open in MNE, pyxdf, pyedflib and ampkit, missing <= 1 s."""

import os
import signal
import subprocess
import sys
import threading
import time

import mne
import numpy as np
import pyedflib
import pyxdf

import ampkit.io

mne.set_log_level("ERROR")

F, FS, CH, AMPL = 3.0, 500.0, 4, 100.0

SCRIPT = f"""
import sys, time, ampkit
amp = ampkit.get_amp('sine', f={F}, fs={FS}, channels={CH}, amplitude={AMPL})
amp.start(filename=sys.argv[1])
i, next_marker, next_report = 0, time.monotonic(), time.monotonic()
while True:
    now = time.monotonic()
    if now >= next_marker:
        amp.add_marker(f"m{{i}}")
        i += 1
        next_marker += 0.05
    amp.get_block()
    if now >= next_report:
        next_report += 0.05
        print(amp.n_samples, amp.n_markers, flush=True)
"""


class Reader(threading.Thread):
    """Collects ``(receipt time, samples, markers)`` lines of a child."""

    def __init__(self, proc):
        super().__init__(daemon=True)
        self.proc, self.lines = proc, []

    def run(self):
        for line in self.proc.stdout:
            samples, markers = map(int, line.split())
            self.lines.append((time.monotonic(), samples, markers))


def _sine(n):
    t = np.arange(n) / FS
    return (AMPL * np.sin(2 * np.pi * F * t)).astype(np.float32)


def test_sigkill_mid_recording(tmp_path):
    env = dict(os.environ, AMPKIT_MARKER_PORT="0")
    targets = ["rec", "rec.bdf", "rec.xdf"]
    procs = [
        subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / t)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for t in targets
    ]
    readers = [Reader(p) for p in procs]
    for r in readers:
        r.start()
    cli = subprocess.Popen(
        [sys.executable, "-m", "ampkit.cli", "record", "sine", "-c", f"f={F}", "-c", f"fs={FS}",
         "-c", f"channels={CH}", "-c", f"amplitude={AMPL}", "-o", str(tmp_path / "cli")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not all(len(r.lines) > 40 for r in readers):  # >= 2 s recorded by each
            assert time.monotonic() < deadline, [p.stderr.read() for p in procs if p.poll()]
            assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs]
            time.sleep(0.05)
        assert cli.poll() is None, cli.stderr.read()
    finally:
        killed_at = time.monotonic()
        for p in [*procs, cli]:
            p.send_signal(signal.SIGKILL)
        for p in [*procs, cli]:
            p.wait(10)
    assert all(p.returncode == -signal.SIGKILL for p in [*procs, cli])

    for target, reader in zip(targets, readers, strict=True):
        # what the child had acquired one second before it was killed
        _, want_samples, want_markers = [x for x in reader.lines if x[0] <= killed_at - 1.0][-1]
        assert want_samples > 0 and want_markers > 0
        rec = ampkit.io.read(tmp_path / target)
        assert rec.n_samples >= want_samples, target
        assert len(rec.markers) >= want_markers, target
        assert [m[2] for m in rec.markers] == [f"m{i}" for i in range(len(rec.markers))]
        assert all(rec.markers[i][0] <= rec.markers[i + 1][0] for i in range(len(rec.markers) - 1))
        sine = _sine(rec.n_samples)
        if target == "rec.bdf":
            np.testing.assert_allclose(rec.data[:, 0], sine, atol=0.02)
            raw = mne.io.read_raw_bdf(tmp_path / target)
            assert raw.n_times >= rec.n_samples
            f = pyedflib.EdfReader(str(tmp_path / target))
            try:
                assert f.getNSamples()[0] >= want_samples
                onsets = f.readAnnotations()[0]
                assert len(onsets) >= want_markers
                # data is written before the markers that refer to it
                assert np.all(np.round(onsets * FS) < f.getNSamples()[0])
            finally:
                f.close()
        else:
            np.testing.assert_array_equal(rec.data[:, 0], sine)
        if target == "rec":
            raw = mne.io.read_raw_brainvision(tmp_path / "rec.vhdr", preload=True)
            assert raw.n_times == rec.n_samples
            np.testing.assert_allclose(raw.get_data()[0], sine * 1e-6, rtol=1e-6)
            onsets = [round(a["onset"] * FS) for a in raw.annotations]
            assert onsets == [m[0] for m in rec.markers]
        if target == "rec.xdf":
            streams, _ = pyxdf.load_xdf(str(tmp_path / target), dejitter_timestamps=False)
            eeg = next(s for s in streams if s["info"]["type"] == ["EEG"])
            mk = next(s for s in streams if s["info"]["type"] == ["Markers"])
            assert len(eeg["time_series"]) == rec.n_samples
            assert len(mk["time_series"]) == len(rec.markers)

    rec = ampkit.io.read(tmp_path / "cli")  # the `ampkit record` process
    assert rec.n_samples > FS
    np.testing.assert_array_equal(rec.data[:, 1], _sine(rec.n_samples))
    assert mne.io.read_raw_brainvision(tmp_path / "cli.vhdr").n_times == rec.n_samples
