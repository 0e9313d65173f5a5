"""BDF+ recordings (``.bdf``): 24-bit samples, markers as annotations.

BDF+ is EDF+ with 24-bit samples (the BioSemi variant). The file is a
fixed-size header followed by *data records* of a fixed duration; each record
holds every channel's samples for that duration plus an ``BDF Annotations``
signal of time-stamped annotation lists (TALs). ``mne.io.read_raw_bdf`` and
pyedflib read it.

Why ampkit writes BDF+ itself instead of through pyedflib's ``EdfWriter``:
edflib keeps annotations in memory until the file is closed and leaves the
header's record count at -1 while writing, so a killed recording loses every
marker and pyedflib refuses to open it. This writer puts each annotation into
the first data record it writes that holds the annotation's sample (never an
earlier one) and rewrites the record count at every flush, so a recording
killed with SIGKILL opens in MNE and pyedflib with its markers up to the last
flush, and never with an annotation past its data. The format is read back by both in the tests.

Quantisation: each channel maps a physical range onto the 24-bit integers;
by default ±262143 µV (31.25 nV steps, BioSemi's range) scaled to the
channel's unit (±262.143 mV, ±0.262143 V). When the driver tells its
converter's step (the optional ``get_resolutions()`` hook, e.g. RDA's 0.1 µV),
the digital step is that step exactly, so the samples are stored without
loss. Values outside the range are clipped and a warning naming the file is
logged.

Records last 0.1 s when that is a whole number of samples (else 0.2, 0.25,
0.5 or 1 s...), so a crash loses at most one record more than the last flush.
The last record is padded to its full length at close; the number of real
samples goes into a further subfield of the recording identification
(``ampkit_samples=N``, EDF+ allows subfields after the equipment), so
:func:`read_bdf` returns exactly the samples recorded (other readers show
the padding as zeros at the end); so does the device's measured sampling
rate (``ampkit_fs=999.9512``; the header's record duration stays nominal),
the equipment name shortened if the 80 characters need it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from ampkit.clock import local_clock
from ampkit.errors import ConfigurationError, RecordingError
from ampkit.io.recording import Recording, keep_markers_in_data, marker_sample, unique_names
from ampkit.io.units import normalise_unit
from ampkit.io.writer import (
    FormatWriter,
    Header,
    Mark,
    check_new,
    create_file,
    recording_error,
    write_all,
)

__all__ = ["BDFWriter", "read_bdf", "trigger_onsets", "DEFAULT_RANGE_UV", "AUTO_STIM",
           "STIM_MASK"]

logger = logging.getLogger("ampkit")

#: Default physical range (± this many µV), BioSemi's.
DEFAULT_RANGE_UV = 262143.0
_UNIT_SCALE = {"µV": 1.0, "μV": 1.0, "uV": 1.0, "mV": 1e-3, "V": 1e-6, "nV": 1e3}
_DMIN, _DMAX = -(2**23), 2**23 - 1
_ANNOT_SAMPLES = 80  # 240 bytes of TALs per record
_SAMPLES_TAG = "ampkit_samples="
_RATE_TAG = "ampkit_fs="


def _field(text: str, width: int) -> bytes:
    raw = text.encode("ascii", errors="replace")[:width]
    return raw.ljust(width, b" ")


def _fit8(x: float) -> str:
    """``x`` in at most 8 characters, as EDF number fields require."""
    for p in range(7, -1, -1):  # fixed point: EDF readers do not all take exponents
        text = f"{x:.{p}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if len(text) <= 8 and text not in ("-0", ""):
            return text
    raise RecordingError(f"physical limit {x!r} does not fit an EDF header field")


def _seconds(x: float) -> str:
    text = f"{x:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    """Write at ``offset`` without moving the file position."""
    if hasattr(os, "pwrite"):
        os.pwrite(fd, data, offset)
        return
    here = os.lseek(fd, 0, os.SEEK_CUR)  # pragma: no cover - Windows
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        os.write(fd, data)
    finally:
        os.lseek(fd, here, os.SEEK_SET)


def _exact_range(step: float) -> tuple[str, int] | None:
    """(physical maximum text, digital maximum) giving digital steps of exactly ``step``.

    The digital range is symmetric (``-k .. k``) and ``k * step`` must fit
    the 8-character header field exactly, with its minus sign.
    """
    if not (math.isfinite(step) and step > 0):
        return None
    for k in (_DMAX, 8000000, 5000000, 4000000, 2500000, 2000000, 1000000):
        value = k * step
        try:
            text = _fit8(value)
        except RecordingError:
            continue
        if len(text) <= 7 and abs(float(text) - value) <= 1e-9 * value:
            return text, k
    return None


def _record_duration(fs: float) -> tuple[str, int]:
    """(duration text, samples per record) with a whole number of samples."""
    for text in ("0.1", "0.2", "0.25", "0.5", "1"):
        n = fs * float(text)
        if abs(n - round(n)) < 1e-9 and round(n) >= 1:
            return text, int(round(n))
    frac = Fraction(fs).limit_denominator(10**6)
    seconds = frac.denominator
    text = _fit8(seconds)
    return text, int(round(fs * seconds))


def _ascii_unit(unit: str) -> str:
    return unit.replace("µ", "u").replace("μ", "u")


class BDFWriter(FormatWriter):
    """Write a BDF+ file incrementally.

    Parameters
    ----------
    path : str or path
        The ``.bdf`` file.
    header : ampkit.io.writer.Header
    overwrite : bool
        Replace an existing file instead of raising.
    physical_max : float or sequence of float, optional
        The largest magnitude each channel can store, in the channel's unit.
        Defaults to :data:`DEFAULT_RANGE_UV` µV converted to the unit.
    """

    format = "bdf"

    def __init__(
        self,
        path: os.PathLike | str,
        header: Header,
        overwrite: bool = False,
        physical_max: float | list[float] | None = None,
    ) -> None:
        super().__init__(path, header, overwrite)
        self.paths = [self.path]
        n_ch = len(header.channels)
        if physical_max is None:
            limits = [DEFAULT_RANGE_UV * _UNIT_SCALE.get(u, 1.0) for u in header.units]
        else:
            limits = list(np.broadcast_to(np.asarray(physical_max, float), (n_ch,)))
        pmax_text = [_fit8(abs(x)) for x in limits]
        pmin_text = [_fit8(-abs(x)) for x in limits]
        dmin, dmax = [_DMIN] * n_ch, [_DMAX] * n_ch
        if physical_max is None and header.resolutions is not None:
            # The driver's converter step, stored exactly when the header can say so.
            for i, step in enumerate(header.resolutions):
                exact = _exact_range(step)
                if exact is not None:
                    pmax_text[i], dmax[i] = exact
                    pmin_text[i], dmin[i] = f"-{exact[0]}", -exact[1]
        self._dmax = np.array(dmax, np.float64)
        self._dmin = np.array(dmin, np.float64)
        self._pmin = np.array([float(t) for t in pmin_text])
        self._pmax = np.array([float(t) for t in pmax_text])
        if np.any(self._pmax <= self._pmin):
            raise RecordingError(f"{self.path}: physical range must be non-zero")
        self._scale = (self._dmax - self._dmin) / (self._pmax - self._pmin)
        self.duration_text, self.spr = _record_duration(header.fs)
        self.duration = float(self.duration_text)
        self._annot_bytes = 3 * _ANNOT_SAMPLES
        self._n_ch = n_ch
        self._record_bytes = 3 * (n_ch * self.spr + _ANNOT_SAMPLES)
        self._pending: np.ndarray = np.empty((0, n_ch), np.float32)
        # (sample, TAL) waiting for the record that holds their sample
        self._annots: list[tuple[int, bytes]] = []
        self._closing = False
        self._last_area = 0  # TAL bytes used in the last record written
        self.n_records = 0
        self._clipped = 0
        self._warned = -math.inf
        check_new(self.paths, overwrite)
        self._fd: int | None = create_file(self.path, overwrite)
        try:
            self.bytes_written += write_all(self._fd, self._header_bytes(pmin_text, pmax_text),
                                            self.path)
        except BaseException:
            self._close_fd()
            raise

    def _header_bytes(self, pmin: list[str], pmax: list[str]) -> bytes:
        h = self.header
        ns = self._n_ch + 1
        start = h.start
        months = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
        recording = (
            f"Startdate {start.day:02d}-{months[start.month - 1]}-{start.year} X X "
            + (_ascii_unit(h.amp).replace(" ", "_")[:30] or "X")
        )
        self._recording_id = recording
        out = [
            b"\xffBIOSEMI",
            _field("X X X X", 80),
            _field(recording, 80),
            _field(start.strftime("%d.%m.%y"), 8),
            _field(start.strftime("%H.%M.%S"), 8),
            _field(str(256 * (ns + 1)), 8),
            _field("BDF+C", 44),
            _field("-1", 8),
            _field(self.duration_text, 8),
            _field(str(ns), 4),
        ]
        labels = [*h.channels, "BDF Annotations"]
        out += [_field(lab, 16) for lab in labels]
        out += [_field("", 80)] * ns  # transducer
        out += [_field(_ascii_unit(u), 8) for u in h.units] + [_field("", 8)]
        out += [_field(t, 8) for t in pmin] + [_field("-1", 8)]
        out += [_field(t, 8) for t in pmax] + [_field("1", 8)]
        out += [_field(str(int(d)), 8) for d in self._dmin] + [_field(str(_DMIN), 8)]
        out += [_field(str(int(d)), 8) for d in self._dmax] + [_field(str(_DMAX), 8)]
        out += [_field("", 80)] * ns  # prefiltering
        out += [_field(str(self.spr), 8)] * self._n_ch + [_field(str(_ANNOT_SAMPLES), 8)]
        out += [_field("", 32)] * ns
        raw = b"".join(out)
        assert len(raw) == 256 * (ns + 1)
        return raw

    # -- writing -------------------------------------------------------------

    def write(self, data: np.ndarray, timestamps: np.ndarray, marks: list[Mark]) -> None:
        """Queue markers as annotations and write every complete data record."""
        for mark in marks:
            text = mark.text.replace("\x14", " ").replace("\x15", " ").replace("\x00", " ")
            onset = f"+{_seconds(mark.sample / self.header.fs)}\x14".encode()
            body = text.encode("utf-8")
            room = self._annot_bytes - 24 - len(onset) - 2  # 24: the record's own TAL
            if len(body) > room:
                body = body[:room].decode("utf-8", errors="ignore").encode("utf-8")
                logger.warning("%s: marker text cut to %d bytes (BDF+ record space)",
                               self.path, len(body))
            self._annots.append((mark.sample, onset + body + b"\x14\x00"))
            self.n_markers += 1
        if len(data):
            if len(self._pending):
                data = np.concatenate([self._pending, data])
            full = len(data) // self.spr
            if full:
                self._write_records(data[: full * self.spr])
            self._pending = np.array(data[full * self.spr :], dtype=np.float32)
            self.n_samples = self.n_records * self.spr + len(self._pending)

    def write_blocks(
        self, data: list[np.ndarray], timestamps: list[np.ndarray], marks: list[Mark]
    ) -> None:
        """Append a batch block by block: small arrays stay in the CPU cache."""
        if not data:
            self.write(np.zeros((0, self._n_ch), np.float32), np.zeros(0), marks)
        for i, (d, t) in enumerate(zip(data, timestamps, strict=True)):
            self.write(d, t, marks if i == 0 else [])

    def _write_records(self, data: np.ndarray) -> None:
        n_rec = len(data) // self.spr
        digital = data.astype(np.float64)  # in place from here: few temporaries
        digital -= self._pmin
        digital *= self._scale
        digital += self._dmin
        np.rint(digital, out=digital)
        lo, hi = digital.min(axis=0), digital.max(axis=0)  # NaN propagates to both
        if not (np.all(lo >= self._dmin) and np.all(hi <= self._dmax)):
            clipped = np.count_nonzero(~((digital >= self._dmin) & (digital <= self._dmax)))
            self._clipped += clipped
            now = local_clock()
            if now - self._warned > 10.0:
                self._warned = now
                logger.warning(
                    "%s: %d values outside the BDF physical range (or NaN) were clipped "
                    "so far",
                    self.path, self._clipped,
                )
            np.nan_to_num(digital, copy=False, nan=0.0)
            np.clip(digital, self._dmin, self._dmax, out=digital)
        # (record, channel, sample) order, then the low three bytes of each int32
        ints = np.empty((n_rec, self._n_ch, self.spr), "<i4")
        ints[...] = digital.reshape(n_rec, self.spr, self._n_ch).transpose(0, 2, 1)
        three = ints.view(np.uint8).reshape(n_rec, self._n_ch * self.spr, 4)[:, :, :3]
        out = np.zeros((n_rec, self._record_bytes), np.uint8)
        body = out[:, : 3 * self._n_ch * self.spr].reshape(n_rec, self._n_ch * self.spr, 3)
        body[...] = three
        start = 3 * self._n_ch * self.spr
        for r in range(n_rec):
            area = self._tals(self.n_records + r)
            out[r, start : start + len(area)] = np.frombuffer(area, np.uint8)
            self._last_area = len(area)
        assert self._fd is not None
        self.bytes_written += write_all(self._fd, out.data, self.path)
        self.n_records += n_rec
        self.flush()  # the count right after the records: readers never see a mismatch

    def _tals(self, record: int) -> bytes:
        """The TAL area of ``record``: its time, then the waiting annotations that fit.

        An annotation goes into the record that holds its sample, or a later
        one: a file cut after any record (SIGKILL) never has an annotation
        past its data.
        """
        area = f"+{_seconds(record * self.duration)}\x14\x14\x00".encode()
        end = (record + 1) * self.spr
        while self._annots and len(area) + len(self._annots[0][1]) <= self._annot_bytes:
            if self._annots[0][0] >= end and not self._closing:
                break
            area += self._annots.pop(0)[1]
        return area

    def flush(self) -> None:
        """Rewrite the header's record count so readers see every record written.

        Called after every write of records.
        """
        if self._fd is None:
            return
        try:
            _pwrite(self._fd, _field(str(self.n_records), 8), 236)
        except OSError as exc:
            raise recording_error(self.path, exc) from exc

    def close(self) -> None:
        """Pad and write the last record, write left-over annotations, close."""
        if self._fd is None:
            return
        self._closing = True  # no more data: every annotation goes out now
        try:
            if self._annots and not len(self._pending) and self.n_records:
                self._annotate_last_record()
            if len(self._pending) or self._annots:
                tail = np.zeros((self.spr, self._n_ch), np.float32)
                tail[: len(self._pending)] = self._pending
                self._pending = self._pending[:0]
                self._write_records(tail)
                while self._annots:  # more markers than one record holds
                    self._write_records(np.zeros((self.spr, self._n_ch), np.float32))
            self.flush()
            # EDF+ allows further subfields after the equipment: the number of
            # real samples, so ampkit.io.read drops the padding of the last record.
            field = f"{self._recording_id} {_SAMPLES_TAG}{self.n_samples}"
            if self.effective_rate is not None:
                rate = f" {_RATE_TAG}{self.effective_rate:.10g}"
                if len(field) + len(rate) > 80:  # shorten the equipment name
                    head, _, equipment = self._recording_id.rpartition(" ")
                    keep = max(1, len(equipment) - (len(field) + len(rate) - 80))
                    field = f"{head} {equipment[:keep]} {_SAMPLES_TAG}{self.n_samples}"
                field += rate
            if len(field) <= 80:
                try:
                    _pwrite(self._fd, _field(field, 80), 88)
                except OSError as exc:
                    raise recording_error(self.path, exc) from exc
        finally:
            self._close_fd()

    def _annotate_last_record(self) -> None:
        """Put pending annotations into the free TAL space of the last record."""
        extra = b""
        while self._annots and self._last_area + len(extra) + len(self._annots[0][1]) <= (
            self._annot_bytes
        ):
            extra += self._annots.pop(0)[1]
        if extra:
            offset = (256 * (self._n_ch + 2) + self.n_records * self._record_bytes
                      - self._annot_bytes + self._last_area)
            try:
                _pwrite(self._fd, extra, offset)  # type: ignore[arg-type]
            except OSError as exc:
                raise recording_error(self.path, exc) from exc
            self._last_area += len(extra)

    def abort(self) -> None:
        """Cut a partial record left by a failed write, fix the count, close."""
        if self._fd is None:
            return
        try:
            header = 256 * (self._n_ch + 2)
            os.ftruncate(self._fd, header + self.n_records * self._record_bytes)
            self.flush()
        except (OSError, RecordingError):
            pass
        self._close_fd()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                    raise recording_error(self.path, exc, "close") from exc


# -- reading -------------------------------------------------------------------
#
# What is read follows the EDF/EDF+/BDF specifications and what
# mne.io.read_raw_edf / read_raw_bdf and mne.find_events make of the same
# files (the facts; the code is ampkit's).

#: Trigger channel names found by ``stim_channel='auto'`` (compared in lower case).
AUTO_STIM = ("status", "trigger")
#: The trigger bits kept, as MNE keeps them: BioSemi's Status channel carries
#: the 16 trigger inputs and the new-epoch bit below this; above it are
#: CMS-in-range, battery and speed-mode bits, which are not events.
STIM_MASK = 2**17 - 1
_TAL = re.compile(rb"([+-]\d+\.?\d*)(\x15(\d+\.?\d*))?(\x14.*?)\x14\x00", re.DOTALL)
_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()


def _meas_date(recording_id: str, date: str, time: str) -> dt.datetime | None:
    """The start as MNE takes it: the EDF+ ``Startdate`` (4-digit year) or the
    header's ``dd.mm.yy`` (85-99 -> 19xx), with ``hh.mm.ss``, in UTC."""
    try:
        parts = recording_id.split(" ")
        day = None
        if len(parts) == 5:
            try:
                d, m, y = parts[1].split("-")
                day = dt.date(int(y), _MONTHS.index(m.upper()) + 1, int(d))
            except ValueError:
                day = None
        if day is None:
            d, m, y = (int(x) for x in date.split("."))
            day = dt.date(y + 2000 if y < 85 else y + 1900, m, d)
        try:
            hh, mm, ss = (int(x) for x in time.split("."))
        except ValueError:
            hh = mm = ss = 0
        return dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=dt.timezone.utc)
    except (ValueError, OverflowError):
        return None


def trigger_onsets(values: np.ndarray) -> np.ndarray:
    """Indices where a trigger channel's value rises, as ``mne.find_events`` finds them.

    ``values`` are whole numbers (masked already). An event starts where the
    value becomes larger than the one before (a step from 0 to 5, and from 5
    to 7); a value present from the first sample is not an event
    (``initial_event=False``).
    """
    values = np.abs(values)
    return np.flatnonzero(values[1:] > values[:-1]) + 1


def read_bdf(path: os.PathLike | str, stim_channel: str | list[str] | None = "auto"):
    """Read a BDF(+) or EDF(+) file.

    Parameters
    ----------
    path : str or path
    stim_channel : str or list of str or None
        Trigger channels to decode into markers: ``'auto'`` (channels named
        ``Status`` or ``TRIGGER``, any case, as MNE), names, or None.

    Returns
    -------
    ampkit.io.Recording
        The signals at the highest rate among the data signals (MNE's
        ``sfreq``); signals at other rates are left out with a warning
        naming them (``mne.io.read_raw_edf`` resamples them). ``markers``
        are the annotations, each at the first sample at or after its
        onset, and the onsets of the trigger channels (their value as the
        text), at the samples where ``mne.find_events`` finds them. Trigger
        channels at the recording's rate stay in ``data`` as MNE shows them
        (whole numbers, the lower 17 bits). Duplicate labels get ``-0``,
        ``-1``, ... as in MNE.

    Raises
    ------
    ampkit.errors.RecordingError
        Not an EDF/BDF file, or a header that does not describe the data.
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 256:
        raise RecordingError(f"{path}: too short for an EDF/BDF header")
    if raw[:8] == b"\xffBIOSEMI":
        width = 3
    elif raw[:8] == b"0       ":
        width = 2
    else:
        raise RecordingError(f"{path}: not an EDF or BDF file (starts with {raw[:8]!r})")

    def text(a: int, b: int) -> str:
        return raw[a:b].decode("latin-1").strip()

    try:
        header_bytes = int(text(184, 192))
        n_records_header = int(text(236, 244))
        duration = float(text(244, 252))
        ns = int(text(252, 256))
    except ValueError as exc:
        raise RecordingError(f"{path}: malformed EDF/BDF header: {exc}") from None
    if not (math.isfinite(duration) and duration > 0):
        raise RecordingError(f"{path}: data record duration {text(244, 252)!r} must be a "
                             "positive number of seconds")
    if ns < 1 or len(raw) < header_bytes or header_bytes != 256 * (ns + 1):
        raise RecordingError(f"{path}: header is cut or inconsistent ({ns} signals, "
                             f"{header_bytes} header bytes, {len(raw)} in the file)")

    def column(offset: int, width_: int) -> list[str]:
        base = 256 + offset * ns
        return [text(base + i * width_, base + (i + 1) * width_) for i in range(ns)]

    labels = column(0, 16)
    dims = column(16 + 80, 8)
    try:
        pmin = np.array([float(x) for x in column(16 + 80 + 8, 8)])
        pmax = np.array([float(x) for x in column(16 + 80 + 16, 8)])
        dmin = np.array([float(x) for x in column(16 + 80 + 24, 8)])
        dmax = np.array([float(x) for x in column(16 + 80 + 32, 8)])
        spr = [int(x) for x in column(16 + 80 + 40 + 80, 8)]
    except ValueError as exc:
        raise RecordingError(f"{path}: malformed signal header: {exc}") from None
    if not all(np.isfinite(a).all() for a in (pmin, pmax, dmin, dmax)):
        raise RecordingError(f"{path}: a physical or digital limit is not a finite number")
    if any(n < 1 for n in spr):
        raise RecordingError(f"{path}: a signal has no samples per data record")
    if n_records_header and text(192, 197) in ("EDF+D", "BDF+D"):
        logger.warning("%s: a discontinuous EDF+D/BDF+D file is read with its records back "
                       "to back (the gaps between them are not kept)", path)
    annot = [i for i, lab in enumerate(labels) if lab in ("BDF Annotations", "EDF Annotations")]
    signals = [i for i in range(ns) if i not in annot]
    if not signals:
        raise RecordingError(f"{path}: no data signals, only annotations")
    names = unique_names([labels[i] for i in signals])
    if names != [labels[i] for i in signals]:
        logger.warning("%s: duplicate channel labels renamed as MNE does: %s", path,
                       ", ".join(n for n, lab in zip(names, (labels[i] for i in signals),
                                                     strict=True) if n != lab))
    name_of = dict(zip(signals, names, strict=True))
    stim = _stim_signals(path, stim_channel, signals, name_of)
    data_signals = [i for i in signals if i not in stim] or signals
    n_spr = max(spr[i] for i in data_signals)
    fs = n_spr / duration
    if not (math.isfinite(fs) and fs > 0):
        raise RecordingError(f"{path}: sampling rate {fs} Hz ({n_spr} samples per "
                             f"{duration} s)")
    kept = [i for i in signals if spr[i] == n_spr]
    left_out = [name_of[i] for i in signals if spr[i] != n_spr and i not in stim]
    if left_out:
        logger.warning("%s: signals at a rate other than %g Hz left out: %s (mne.io.read_raw_"
                       "edf resamples them)", path, fs, ", ".join(left_out))
    record_bytes = width * sum(spr)
    n_records = (len(raw) - header_bytes) // record_bytes  # as MNE: whole records in the file
    body = np.frombuffer(raw, np.uint8, n_records * record_bytes, header_bytes)
    body = body.reshape(n_records, record_bytes)
    offsets = np.concatenate([[0], np.cumsum(spr)]) * width
    gain = (pmax - pmin) / np.where(dmax == dmin, 1.0, dmax - dmin)
    gain = np.where(pmax == pmin, 1.0 / np.where(dmax == dmin, 1.0, dmax - dmin), gain)

    def ints(i: int) -> np.ndarray:
        chunk = body[:, offsets[i] : offsets[i + 1]].reshape(-1, width).astype(np.int32)
        if width == 3:
            return ((chunk[:, 0] | (chunk[:, 1] << 8) | (chunk[:, 2] << 16)) ^ 0x800000) - 0x800000
        return ((chunk[:, 0] | (chunk[:, 1] << 8)) ^ 0x8000) - 0x8000

    def trigger_values(i: int) -> np.ndarray:
        if width == 3:  # BioSemi: the digital value itself, as MNE
            values = ints(i).astype(np.int64)
        else:
            values = np.trunc((ints(i) - dmin[i]) * gain[i] + pmin[i]).astype(np.int64)
        return values & STIM_MASK

    data = np.empty((n_records * n_spr, len(kept)), np.float32)
    units, types = [], []
    for col, i in enumerate(kept):
        if i in stim:
            data[:, col] = trigger_values(i)
            types.append("stim")
        else:
            data[:, col] = (ints(i) - dmin[i]) * gain[i] + pmin[i]
            types.append("eeg")
        units.append(normalise_unit(dims[i]))
    n_samples = len(data)
    equipment = text(88, 168).split(" ")
    for item in equipment[5:]:
        count = item[len(_SAMPLES_TAG):]
        if item.startswith(_SAMPLES_TAG) and count.isascii() and count.isdigit():
            n_samples = min(n_samples, int(count))  # without the padding
    data = data[:n_samples]

    placed: list[tuple[float, float, str]] = []
    annotations = []
    if annot:
        tals = b"".join(body[:, offsets[i] : offsets[i + 1]].tobytes() for i in annot)
        annotations = _read_tals(tals)
        for onset, _, text_ in annotations:
            placed.append((marker_sample(onset, fs), onset, text_))
    events = set()  # the same event on two trigger channels is one, as in mne.find_events
    for i in stim:
        values = trigger_values(i)
        steps = trigger_onsets(values)
        if spr[i] == n_spr:
            samples = steps
        else:  # another rate: the first sample of ours that shows the new value
            rec, k = np.divmod(steps, spr[i])
            samples = rec * n_spr + -((-k * n_spr) // spr[i])
        for sample, k in zip(samples.tolist(), steps.tolist(), strict=True):
            if (sample, int(values[k])) not in events:
                events.add((sample, int(values[k])))
                placed.append((sample, sample / fs, str(int(values[k]))))
    amp = equipment[4] if len(equipment) > 4 and equipment[4] != "X" else ""
    return Recording(
        data=data,
        fs=fs,
        channels=[name_of[i] for i in kept],
        units=units,
        markers=keep_markers_in_data(placed, n_samples, path),
        amp=amp,
        path=path,
        format="bdf" if width == 3 else "edf",
        meas_date=_meas_date(text(88, 168), text(168, 176), text(176, 184)),
        types=types,
        annotations=annotations,
    )


def _stim_signals(path: Path, stim_channel, signals: list[int], name_of: dict) -> list[int]:
    """The signals decoded as trigger channels (MNE's rule: the first of each name)."""
    if stim_channel is None or stim_channel is False:
        return []
    if stim_channel == "auto":
        wanted, strict = list(AUTO_STIM), False
    else:
        wanted = [stim_channel] if isinstance(stim_channel, str) else list(stim_channel)
        wanted, strict = [str(w).lower() for w in wanted], True
    lower = [name_of[i].lower() for i in signals]
    found = [signals[lower.index(w)] for w in wanted if w in lower]
    if strict and len(found) != len(wanted):
        missing = [w for w in wanted if w not in lower]
        raise ConfigurationError(f"{path}: no channel named {', '.join(missing)} (channels: "
                                 f"{', '.join(name_of[i] for i in signals)})")
    return found


def _read_tals(tals: bytes) -> list[tuple[float, float, str]]:
    """``(onset_s, duration_s, text)`` of every annotation, as MNE reads them.

    Onsets are relative to the first data record: the time-keeping onset of
    the first record (its first TAL, with no text) is subtracted.
    """
    out, offset = [], 0.0
    for k, match in enumerate(_TAL.finditer(tals)):
        onset = float(match.group(1)) + offset
        length = float(match.group(3)) if match.group(3) else 0.0
        texts = match.group(4).split(b"\x14")[1:]
        for item in texts:
            if item:
                out.append((onset, length, item.decode("utf-8", errors="replace")))
            elif k == 0:
                offset = -onset
    return out
