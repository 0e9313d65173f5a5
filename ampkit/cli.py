"""The ``ampkit`` command.

::

    ampkit list                                   drivers, one line each
    ampkit info DRIVER [-c key=value ...]         channels, rate, presets
    ampkit info FILE                              summary of a recording
    ampkit plot FILE [-o out.png]                 draw a recording
    ampkit record DRIVER [-c key=value ...] [-d SECONDS] [-o BASE] [--marker-port P]
    ampkit stream DRIVER [-c key=value ...] [--name NAME] [-d SECONDS] [--marker-port P]
    ampkit impedance DRIVER [-c key=value ...] [-n COUNT] [--interval S]   electrode impedances
    ampkit sim DEVICE ...                         run a device simulator
    ampkit marker TEXT [--udp] [--host H] [--port P]   send a marker to a running amp
    ampkit serve [DRIVER] [-c key=value ...] [--port 8080] [--name NAME] [--log-port P | --no-log]
    ampkit logs [--port 9020] [--file F]          a Dareplane log server
    ampkit --version

Each subcommand is a ``cmd_<name>(args)`` function registered in
:func:`build_parser`; ``sim`` devices register in the ``sim`` group.

Every mistake of the user -- a bad option, an unknown setting, a missing or
unreadable file, a busy port -- ends the command with one line on stderr
(``ampkit COMMAND: what to change``) and exit status 2; a traceback means a
bug in ampkit.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import inspect
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ampkit import __version__
from ampkit.clock import local_clock
from ampkit.errors import AmpkitError, ConfigurationError

__all__ = ["main", "build_parser", "parse_config"]


def parse_config(pairs: Sequence[str]) -> dict[str, Any]:
    """Turn ``["fs=250", "channels=8", "host=10.0.0.2"]`` into keyword arguments.

    Values are read as Python literals when they are one (numbers, lists,
    True/False/None) and as strings otherwise.

    Raises
    ------
    ampkit.errors.ConfigurationError
        An item without ``=``.
    """
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"-c expects key=value, got {pair!r}")
        try:
            value: Any = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        config[key.strip()] = value
    return config


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (what is wrong, where to read more), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _seconds(text: str, zero: bool = False) -> float:
    """An argparse type: a positive (or with ``zero``, non-negative), finite
    number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        wanted = "0 or more seconds" if zero else "a positive number of seconds"
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def _start_seconds(text: str) -> float:
    return _seconds(text, zero=True)


def _count(text: str) -> int:
    """An argparse type: a positive whole number."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _port(text: str, lowest: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not lowest <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number {lowest}-65535, got {text!r}")
    return value


def _marker_port(text: str) -> int | str:
    """An argparse type: a port for the marker servers, 0 (any free port) or 'off'."""
    if text.strip().lower() in ("off", "none"):
        return "off"
    try:
        return _port(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a port number 0-65535 (0: any free port) or 'off', got {text!r}"
        ) from None


def _peer_port(text: str) -> int:
    return _port(text, lowest=1)


def _add_config_args(
    parser: argparse.ArgumentParser, what: str | None = None, optional: bool = False
) -> None:
    if optional:
        parser.add_argument("driver", nargs="?", help="driver name (see `ampkit list`)")
    elif what is None:
        parser.add_argument("driver", help="driver name (see `ampkit list`)")
    else:
        parser.add_argument("driver", metavar=what, help="a driver name (see `ampkit list`), "
                            "or a recording file (BASE, .vhdr, .bdf, .edf, .xdf)")
    parser.add_argument(
        "-c", "--config", action="append", default=[], metavar="KEY=VALUE",
        help="a configure() setting, repeatable (e.g. -c fs=250 -c channels=8)",
    )
    parser.add_argument("-p", "--preset", help="configure with this preset (name or number)")


def _open_amp(args: argparse.Namespace):
    from ampkit.registry import get_amp

    amp = get_amp(args.driver)
    config: dict[str, Any] = {}
    if args.preset is not None:
        presets = amp.presets
        match = [p for i, p in enumerate(presets) if args.preset in (p[0], str(i))]
        if not match:
            names = "; ".join(f"{i}: {p[0]}" for i, p in enumerate(presets)) or "none"
            raise ConfigurationError(
                f"no preset {args.preset!r} for {args.driver}; presets: {names}"
            )
        config.update(match[0][1])
    config.update(parse_config(args.config))
    if config:
        _configure(amp, args.driver, config)
    return amp


def _configure(amp: Any, driver: str, config: dict[str, Any]) -> None:
    """``amp.configure(**config)``; a setting the driver does not take, or a
    value it cannot use, becomes a ConfigurationError naming what it takes."""
    try:
        params = inspect.signature(amp.amp.configure).parameters
    except (TypeError, ValueError):  # no signature to read: let configure() judge
        params = None
    if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = [name for name, p in params.items()
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [key for key in config if key not in accepted]
        if unknown:
            raise ConfigurationError(
                f"driver {driver!r} has no setting {', '.join(map(repr, unknown))}; "
                f"it takes -c {', '.join(accepted) or '(nothing)'}"
            )
    try:
        amp.configure(**config)
    except (TypeError, ValueError) as exc:  # a driver that does not check its values itself
        raise ConfigurationError(f"driver {driver!r} refused {config}: {exc}") from None


@contextlib.contextmanager
def _sigterm_event() -> Iterator[threading.Event]:
    """Turn SIGTERM into an event that a command's loop polls, so that it ends
    as cleanly as on Ctrl-C; the previous handler is restored afterwards."""
    event = threading.Event()
    try:
        old = signal.signal(signal.SIGTERM, lambda signum, frame: event.set())
    except ValueError:  # not the main thread (commands run from tests): leave it alone
        old = None
    try:
        yield event
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _serve(sim: Any, duration: float | None) -> None:
    """Keep a started simulator running until ``duration``, SIGTERM or Ctrl-C;
    raise its thread's error if it fails; close it in any case."""
    with _sigterm_event() as stopping:
        t0 = local_clock()
        try:
            while not stopping.is_set() and (duration is None or local_clock() - t0 < duration):
                time.sleep(0.1)
                sim.check()
        except KeyboardInterrupt:
            pass
        finally:
            sim.close()


def cmd_list(args: argparse.Namespace) -> int:
    """Print every registered driver with its availability."""
    from ampkit.registry import ALIASES, list_drivers

    aliases: dict[str, list[str]] = {}
    for alias, target in ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    for info in list_drivers():
        if info.error is not None:
            state = f"error: {info.error}"
        else:
            state = "available" if info.available else "not available"
        also = f" (libmushu: {', '.join(aliases[info.name])})" if info.name in aliases else ""
        print(f"{info.name:<10} {state:<14} {info.target}{also}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print a driver's channels, rate and presets, or summarise a recording file."""
    from ampkit.io import is_recording, read

    suffix = args.driver.rpartition(".")[2].lower()
    if (is_recording(args.driver) or suffix in ("bdf", "edf", "xdf", "vhdr", "eeg", "meta")
            or "/" in args.driver or os.sep in args.driver):
        print(read(args.driver).summary())  # a missing file: "no recording at ..."
        return 0
    amp = _open_amp(args)
    channels = amp.get_channels()
    print(f"driver:    {args.driver} ({type(amp.amp).__module__}.{type(amp.amp).__name__})")
    print(f"rate:      {amp.get_sampling_frequency():g} Hz")
    print(f"channels:  {len(channels)}: {', '.join(channels)}")
    print(f"units:     {', '.join(sorted(set(amp.get_units())))}")
    print(f"available: {'yes' if amp.is_available() else 'no'}")
    for i, (name, config) in enumerate(amp.presets):
        print(f"preset {i}:  {name}  {config}")
    return 0


class _Progress:
    """A status line rewritten in place on stderr (a line at a time when not a tty)."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.tty = sys.stderr.isatty()
        self._next = local_clock() + interval  # first line once there is a rate to show

    def show(self, text: str, force: bool = False) -> None:
        now = local_clock()
        if not force and now < self._next:
            return
        self._next = now + (self.interval if self.tty else 5.0)
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _format_status(elapsed: float, status: dict[str, Any], acquiring: float | None = None) -> str:
    """One progress line; time and rate are over ``acquiring`` seconds (since
    the first sample was taken) when known, else over ``elapsed``."""
    samples = status.get("samples", 0)
    span = elapsed if acquiring is None else acquiring
    rate = samples / span if span > 0 else 0.0
    parts = [
        f"{span:7.1f} s",
        f"{samples} samples",
        f"{rate:9.1f} Hz",
        f"{status.get('markers', 0)} markers",
    ]
    if status.get("gaps"):
        parts.append(f"{status['gaps']} gaps")
    for key, value in status.items():
        # A counter at zero (nothing dropped, nothing waiting) says nothing.
        if key not in ("samples", "markers", "gaps") and value != 0:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``start()`` options every command that starts an amp shares."""
    options: dict[str, Any] = {}
    if args.marker_port is not None:
        options["marker_port"] = None if args.marker_port == "off" else args.marker_port
    if args.marker_host is not None:
        options["marker_host"] = args.marker_host
    if args.share is not None:
        options["share"] = args.share
    if args.share_seconds is not None:
        options["share_seconds"] = args.share_seconds
    return options


def _start(amp: Any, options: dict[str, Any]) -> None:
    """``amp.start(**options)``; a busy marker port is explained in this
    command's options, not in Python's."""
    try:
        amp.start(**options)
    except ConfigurationError as exc:
        cause = exc.__cause__
        if not (isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE):
            raise
        from ampkit.markers import DEFAULT_HOST, PORT_VARIABLE, default_port

        port = options.get("marker_port", "default")
        port = default_port() if port == "default" else port
        host = options.get("marker_host", DEFAULT_HOST)
        raise ConfigurationError(
            f"marker port {port} on {host} is already in use, probably by another running amp "
            f"or program; give --marker-port 0 for a free port (it is printed), --marker-port "
            f"PORT for another, or --marker-port off for no marker servers (or set "
            f"{PORT_VARIABLE})"
        ) from None


def _announce_markers(amp: Any) -> None:
    """Say where the marker servers listen (on stdout, so scripts can read it)."""
    addresses = amp.marker_addresses
    if not addresses:
        return
    (host, tcp), (_, udp) = addresses["tcp"], addresses["udp"]
    to = "" if host in ("127.0.0.1", "::1", "0.0.0.0", "::") else f" --host {host}"
    if tcp == udp:
        where = f"{host}:{tcp} (TCP and UDP)"
        send = f"ampkit marker TEXT{to} --port {tcp}"
    else:
        where = f"TCP {host}:{tcp}, UDP {host}:{udp}"
        send = f"ampkit marker TEXT{to} --port {tcp}, or --udp --port {udp}"
    print(f"marker servers on {where}; send with: {send}", flush=True)


def _grace(duration: float) -> float:
    """How long after ``duration`` a run whose samples stopped coming still
    waits for them: longer than any transport's latency (an RDA or LSL block
    may arrive a fraction of a second after its samples' time)."""
    return 1.0 + 0.1 * duration


def _run(amp, args: argparse.Namespace, start_options: dict[str, Any]) -> int:
    """Start ``amp``, read until the duration is over, SIGTERM or Ctrl-C, stop, report.

    The duration is measured on the samples' own timestamps, from the start
    of the first sample's period: the run ends with the block that completes
    it, so it holds ``duration * fs`` samples and at most one block more,
    however long starting took. Until the first sample it is wall time, and
    if samples stop coming the run ends :func:`_grace` seconds after the
    duration (wall time since the first sample).
    """
    progress = _Progress()
    duration = args.duration
    with _sigterm_event() as stopping:
        try:
            _start(amp, start_options)
            _announce_markers(amp)
        except BaseException:
            amp.close()
            raise
        t0 = local_clock()
        period = 1.0 / amp.get_sampling_frequency()
        first: float | None = None  # when the first sample's period began

        def acquiring() -> float | None:
            return None if first is None else local_clock() - first

        try:
            while not stopping.is_set():
                if duration is not None:
                    since = local_clock() - (t0 if first is None else first)
                    if since >= duration + (0.0 if first is None else _grace(duration)):
                        break
                block = amp.get_block()
                if len(block):
                    if first is None:
                        first = float(block.timestamps[0]) - period
                    if duration is not None and block.timestamps[-1] - first >= duration:
                        break
                progress.show(_format_status(local_clock() - t0, amp.status(), acquiring()))
                if not len(block):
                    time.sleep(0.005)
        except KeyboardInterrupt:
            pass
        finally:
            elapsed, since = local_clock() - t0, acquiring()
            status = amp.status()
            amp.stop()
            amp.close()
            progress.show(_format_status(elapsed, status, since), force=True)
            progress.done()
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    """Acquire from a driver, recording to ``-o`` when given, with live progress."""
    amp = _open_amp(args)
    options = _run_options(args)
    if args.output is not None:
        options["filename"] = args.output
    if args.overwrite:
        options["overwrite"] = True
    return _run(amp, args, options)


def _impedance_text(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "open" if math.isinf(value) else f"{value:.1f}"


def cmd_impedance(args: argparse.Namespace) -> int:
    """Show a driver's electrode impedances per channel in kΩ, measured again
    every --interval seconds (in place on a terminal, a line each otherwise)."""
    amp = _open_amp(args)
    try:
        channels = amp.get_channels()
        width = max((len(c) for c in channels), default=1)
        tty = sys.stdout.isatty()
        shown = 0
        with _sigterm_event() as stopping:
            try:
                while not stopping.is_set() and (args.count is None or shown < args.count):
                    values = amp.get_impedances()
                    if values is None:
                        raise ConfigurationError(
                            f"driver {args.driver!r} cannot measure impedance (it has no "
                            "get_impedances())")
                    pairs = [(c, _impedance_text(float(v)))
                             for c, v in zip(channels, values, strict=False)]
                    if tty:  # the table again, in place
                        up = f"\033[{len(pairs)}F" if shown else ""
                        print(up + "\n".join(f"{c:<{width}} {t:>8} kΩ\033[K" for c, t in pairs),
                              flush=True)
                    else:
                        print("  ".join(f"{c} {t}" for c, t in pairs) + "  kΩ", flush=True)
                    shown += 1
                    if args.count is None or shown < args.count:
                        stopping.wait(args.interval)
            except KeyboardInterrupt:
                pass
    finally:
        amp.close()
    return 0


def cmd_marker(args: argparse.Namespace) -> int:
    """Send one marker to a running amp's marker server."""
    from ampkit.markers import send_marker

    send_marker(args.text, args.host, args.port, "udp" if args.udp else "tcp")
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    """Publish a driver's data and markers as LSL streams, with live progress."""
    amp = _open_amp(args)
    options = _run_options(args)
    options.update(lsl=args.name or True, lsl_type=args.type)
    if args.source_id is not None:
        options["lsl_source_id"] = args.source_id
    return _run(amp, args, options)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run a Dareplane module around one amp until CLOSE, SIGTERM or Ctrl-C."""
    from ampkit.logging import LogShipper
    from ampkit.serve import DareplaneModule

    package = logging.getLogger("ampkit")
    shipper = None
    if args.log_port != "off":
        # The control room wants to see commands and state changes: ship INFO
        # and up, and keep the console at the level -v asked for.
        console = logging.WARNING - 10 * args.verbose
        for handler in logging.getLogger().handlers:
            handler.setLevel(console)
        package.setLevel(min(console, logging.INFO))
        shipper = LogShipper(port=args.log_port, level=min(console, logging.INFO)).start()
        package.addHandler(shipper)
    try:
        if args.driver is not None:
            amp = _open_amp(args)
        elif args.config or args.preset is not None:
            raise ConfigurationError("-c and -p need a DRIVER")
        else:
            amp = None
        module = DareplaneModule(amp, driver=args.driver, host=args.host, port=args.port,
                                 name=args.name, start_options=_run_options(args))
        with _sigterm_event() as stopping:
            try:
                module.start()
                host, port = module.address
                log = "no log server" if shipper is None else f"logs to 127.0.0.1:{args.log_port}"
                print(f"Dareplane module {module.name!r} listening on {host}:{port} ({log}); "
                      f"commands: {'|'.join(module.commands)}", flush=True)
                while not stopping.is_set() and not module.closed.wait(0.2):
                    module.check()
            except KeyboardInterrupt:
                pass
            finally:
                module.close()
    finally:
        if shipper is not None:
            package.removeHandler(shipper)
            shipper.close()
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """Receive Dareplane log records and print them (and append them to --file)."""
    from ampkit.logging import FORMAT, LogReceiver

    formatter = logging.Formatter(FORMAT)
    out = open(args.file, "a", encoding="utf-8") if args.file else None

    def show(record: logging.LogRecord) -> None:
        line = formatter.format(record)
        print(line, flush=True)
        if out is not None:
            out.write(line + "\n")
            out.flush()

    try:
        receiver = LogReceiver(show, host=args.host, port=args.port)
        with _sigterm_event() as stopping, receiver:
            host, port = receiver.address
            print(f"receiving log records on {host}:{port}"
                  f"{f'; appending to {args.file}' if out else ''}", flush=True)
            try:
                while not stopping.wait(0.2):
                    receiver.check()
            except KeyboardInterrupt:
                pass
    finally:
        if out is not None:
            out.close()
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw a recording to an image file (needs matplotlib)."""
    from ampkit.plot import save_plot

    output = args.output or f"{args.file}.png"
    channels = [c.strip() for c in args.channels.split(",")] if args.channels else None
    save_plot(args.file, output, start=args.start, duration=args.duration, channels=channels)
    print(output)
    return 0


def cmd_sim_rda(args: argparse.Namespace) -> int:
    """Serve the RDA simulator (BrainVision Recorder's side) until Ctrl-C or --duration."""
    from ampkit.sim.rda import RDASimulator

    sim = RDASimulator(
        host=args.host, port=args.port, channels=args.channels, fs=args.fs,
        block_size=args.block_size, dtype="int16" if args.int16 else "float32",
        resolution=args.resolution, marker_rate=args.marker_rate, preamble=args.preamble,
        ppm=args.ppm,
    )
    try:
        sim.start()
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {sim.host}:{sim.port}: {exc}") from None
    print(
        f"RDA server on {sim.host}:{sim.port}: {len(sim.channels)} channels, {sim.fs:g} Hz, "
        f"{sim.dtype}; connect with ampkit.get_amp('rda', port={sim.port}). Ctrl-C stops.",
        flush=True,
    )
    if sim.ppm:
        print(f"clock {sim.ppm:+g} ppm off {sim.fs:g} Hz: sample k is sent at "
              f"{sim.sample_time(0):.6f} + k / {sim.true_rate!r} s (local_clock)", flush=True)
    _serve(sim, args.duration)
    print(f"sent {sim.blocks_sent} blocks", flush=True)
    return 0


def cmd_sim_cyton(args: argparse.Namespace) -> int:
    """Run the OpenBCI Cyton simulator on a pty; print the port path first."""
    from ampkit.sim.cyton import CytonSimulator

    try:
        sim = CytonSimulator(daisy=args.daisy, fs=args.fs, garbage=args.garbage,
                             drop=args.drop, seed=args.seed, ppm=args.ppm)
    except (ValueError, OSError) as exc:
        raise ConfigurationError(f"cannot start the Cyton simulator: {exc}") from None
    sim.start()
    print(sim.port, flush=True)
    print(
        f"OpenBCI Cyton{' + Daisy' if args.daisy else ''} on {sim.port}; connect with "
        f"ampkit.get_amp('cyton', port='{sim.port}'{', daisy=True' if args.daisy else ''}). "
        "Ctrl-C stops.",
        file=sys.stderr, flush=True,
    )
    _serve(sim, args.duration)
    print(f"sent {sim.n_sent} packets", file=sys.stderr, flush=True)
    return 0


def _add_run_args(parser: argparse.ArgumentParser, verb: str) -> None:
    """Options of every command that starts an amp."""
    parser.add_argument("-d", "--duration", type=_seconds,
                        help=f"seconds to {verb} (default: until Ctrl-C)")
    _add_marker_args(parser)
    _add_share_args(parser)


def _add_share_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--share", metavar="NAME",
        help="share the data with other processes of this computer through shared memory "
             "as NAME (read with ampkit.attach(NAME))",
    )
    parser.add_argument("--share-seconds", metavar="S", type=_seconds,
                        help="seconds the shared ring holds (default 10)")


def _add_marker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--marker-port", metavar="PORT", type=_marker_port,
        help="port of the TCP/UDP marker servers (default 12344, or $AMPKIT_MARKER_PORT; "
             "0: any free port; off: none); the port is printed",
    )
    parser.add_argument(
        "--marker-host", metavar="HOST",
        help="interface the marker servers listen on (default 127.0.0.1; 0.0.0.0: all)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ampkit`` command."""
    parser = _Parser(prog="ampkit", description="Acquire from EEG/biosignal amplifiers.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list drivers and whether their device is available")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "info", help="show a driver's channels, rate and presets, or summarise a recording FILE"
    )
    _add_config_args(p, "DRIVER_OR_FILE")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("record", help="acquire (and record with -o) with live progress")
    _add_config_args(p)
    _add_run_args(p, "record")
    p.add_argument(
        "-o", "--output", metavar="BASE",
        help="record to BASE (five-file default format), BASE.bdf or BASE.xdf",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing recording")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("impedance", help="show a driver's electrode impedances live (kΩ)")
    _add_config_args(p)
    p.add_argument("-n", "--count", type=_count, metavar="N",
                   help="measurements to show (default: until Ctrl-C)")
    p.add_argument("--interval", type=_start_seconds, default=0.5, metavar="S",
                   help="seconds between measurements (default 0.5)")
    p.set_defaults(func=cmd_impedance)

    p = sub.add_parser("marker", help="send a marker to a running amp (TCP, or UDP)")
    p.add_argument("text", help="the marker, e.g. 'S 1'")
    p.add_argument("--udp", action="store_true", help="send a UDP datagram instead of TCP")
    p.add_argument("--host", default="127.0.0.1", help="the amp's computer (default 127.0.0.1)")
    p.add_argument("--port", type=_peer_port, default=12344,
                   help="its marker port (default 12344; `record` and `stream` print theirs)")
    p.set_defaults(func=cmd_marker)

    p = sub.add_parser("stream", help="publish a driver's data and markers as LSL streams")
    _add_config_args(p)
    p.add_argument("--name", help="LSL stream name (default: the driver name); "
                   "markers go to NAME-markers")
    p.add_argument("--type", default="EEG", help="LSL content type (default: EEG)")
    p.add_argument("--source-id", help="LSL source id (default: ampkit:HOSTNAME:NAME)")
    _add_run_args(p, "stream")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("serve", help="run a Dareplane module (DefaultServer protocol) "
                       "around one amp")
    _add_config_args(p, optional=True)
    # --ip: the name a Dareplane control room passes (kind = 'python' modules)
    p.add_argument("--host", "--ip", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0: all)")
    p.add_argument("--port", type=_port, default=8080,
                   help="TCP port (default 8080; 0: any free port); the port is printed")
    p.add_argument("--name", default="ampkit", help="module name in the greeting")
    log = p.add_mutually_exclusive_group()
    log.add_argument("--log-port", type=_peer_port, default=9020,
                     help="port of the Dareplane log server on 127.0.0.1 (default 9020)")
    log.add_argument("--no-log", dest="log_port", action="store_const", const="off",
                     help="do not send log records to a log server")
    _add_marker_args(p)
    _add_share_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("logs", help="receive Dareplane log records (a log server)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=_port, default=9020,
                   help="TCP port (default 9020; 0: any free port, printed)")
    p.add_argument("--file", help="also append the records to this file")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("plot", help="draw a recording's channels and markers to an image")
    p.add_argument("file", help="a recording (BASE, BASE.vhdr, .bdf, .xdf)")
    p.add_argument("-o", "--output", help="image file (.png, .pdf, .svg); default FILE.png")
    p.add_argument("--start", type=_start_seconds, default=0.0, help="first second to draw")
    p.add_argument("-d", "--duration", type=_seconds, help="seconds to draw (default: all)")
    p.add_argument("--channels", help="comma-separated channels to draw (default: all)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("sim", help="run a device simulator")
    sims = p.add_subparsers(dest="device", metavar="DEVICE")
    # Each device simulator adds its parser to `sims` here.
    q = sims.add_parser("rda", help="an RDA server (BrainVision Recorder's side) on TCP")
    q.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    q.add_argument("--port", type=_port,
                   help="TCP port (default 51244, 51234 with --int16; 0: any)")
    q.add_argument("--channels", type=int, default=32, help="number of channels (default 32)")
    q.add_argument("--fs", type=float, default=1000.0, help="sampling rate in Hz (default 1000)")
    q.add_argument("--block-size", type=int, help="samples per data message (default 20 ms)")
    q.add_argument("--int16", action="store_true", help="send int16 samples (default float32)")
    q.add_argument("--resolution", type=float, default=0.1, help="µV per unit (default 0.1)")
    q.add_argument("--marker-rate", type=float, default=1.0, help="markers per second (0: none)")
    q.add_argument("--preamble", action="store_true",
                   help="send state/info/keep-alive/unknown messages before the start message")
    q.add_argument("--ppm", type=float, default=0.0,
                   help="run the amplifier's clock this many ppm off --fs (default 0)")
    q.add_argument("-d", "--duration", type=_seconds,
                   help="seconds to serve (default: until Ctrl-C)")
    q.set_defaults(func=cmd_sim_rda)
    q = sims.add_parser("cyton", help="an OpenBCI Cyton board on a pty (prints the port path)")
    q.add_argument("--daisy", action="store_true", help="with the Daisy module (16 channels)")
    q.add_argument("--fs", type=int, default=250, help="board sample rate in Hz (default 250)")
    q.add_argument("--garbage", type=float, default=0.0,
                   help="probability per packet of random bytes before it (default 0)")
    q.add_argument("--drop", type=float, default=0.0,
                   help="probability per packet of not sending it (default 0)")
    q.add_argument("--seed", type=int, default=0, help="seed of the faults (default 0)")
    q.add_argument("--ppm", type=float, default=0.0,
                   help="run the board's clock this many ppm off --fs (default 0)")
    q.add_argument("-d", "--duration", type=_seconds, help="seconds to run (default: until Ctrl-C)")
    q.set_defaults(func=cmd_sim_cyton)
    sims.required = True
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ampkit`` command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    command = " ".join(filter(None, ["ampkit", args.command, getattr(args, "device", None)]))
    try:
        return args.func(args)
    except (AmpkitError, OSError) as exc:  # OSError: a file or port of the user's choosing
        text = str(exc).strip() or type(exc).__name__
        lines = text.splitlines()
        if len(lines) > 1:  # e.g. a parser's dump of a whole header: its first line, the rest on -v
            logging.getLogger("ampkit").info("%s: %s", command, text)
            text = lines[0] + (" (more with -v)" if not args.verbose else "")
        print(f"{command}: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the command's own loop took over
        return 130


if __name__ == "__main__":
    sys.exit(main())
