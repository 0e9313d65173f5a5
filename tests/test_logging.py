"""Log shipping in Dareplane's framing (ampkit.logging), against dareplane-utils' own
handler and receiver run as real processes, and against each other."""

import logging
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time

import ampkit.logging
from ampkit.logging import LogReceiver, LogShipper, fields_of, record_from_fields
from ampkit.protocols.dareplane import encode_log_record


def test_the_module_name_does_not_hide_the_standard_library():
    assert ampkit.logging.logging is sys.modules["logging"]
    assert ampkit.logging.logging.__file__ != ampkit.logging.__file__
    assert logging.getLogger is sys.modules["logging"].getLogger


class Collected:
    """Records a LogReceiver hands over, waited for by count."""

    def __init__(self):
        self.records = []

    def __call__(self, record):
        self.records.append(record)

    def wait(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.records) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.records


def make_logger(handler, name):
    log = logging.getLogger(name)
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


def test_records_arrive_formatted_with_their_levels(request):
    got = Collected()
    with LogReceiver(got, port=0) as receiver, \
            LogShipper(port=receiver.address[1], retry=0.05) as shipper:
        log = make_logger(shipper, f"ampkit-test-{request.node.name}")
        log.debug("debug %d", 1)
        log.info("two %s and %s", "args", 2)
        log.warning("a literal %s and 100% stay as they are")  # no args: not formatted
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed with %r", "x")
        records = got.wait(4)
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("DEBUG", "debug 1"), ("INFO", "two args and 2"),
        ("WARNING", "a literal %s and 100% stay as they are"), ("ERROR", "failed with 'x'")]
    assert "ValueError: boom" in records[3].exc_text
    assert records[1].name == log.name and records[1].lineno > 0
    assert shipper.sent == 4 and shipper.dropped == 0


def test_a_missing_log_server_costs_nothing_and_drops_are_counted_then_reported():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shipper = LogShipper(port=port, max_bytes=20_000, retry=0.05).start()
    try:
        log = make_logger(shipper, "ampkit-test-missing")
        t0 = time.monotonic()
        for i in range(2000):
            log.info("record %d %s", i, "x" * 50)
        assert time.monotonic() - t0 < 2.0  # generous: microseconds each, no connect
        assert not shipper.connected and shipper.sent == 0
        assert 0 < shipper.dropped < 2000  # bounded: the oldest went
        assert shipper._queued <= 20_000
        dropped = shipper.dropped
        got = Collected()
        with LogReceiver(got, port=port):  # the server appears: the rest and a notice arrive
            records = got.wait(2000 - dropped + 1)
        assert records[0].levelname == "WARNING"
        assert f"{dropped} log records were dropped" in records[0].getMessage()
        assert records[-1].getMessage() == f"record 1999 {'x' * 50}"
        assert len(records) == 2000 - dropped + 1
    finally:
        shipper.close()


def test_a_log_server_that_stops_reading_blocks_nothing():
    with socket.socket() as stuck:  # accepts (into the backlog) but never reads
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.bind(("127.0.0.1", 0))
        stuck.listen()
        shipper = LogShipper(port=stuck.getsockname()[1], max_bytes=200_000).start()
        try:
            log = make_logger(shipper, "ampkit-test-stuck")
            t0 = time.monotonic()
            sent = -1
            while shipper.sent != sent:  # until the socket buffers are full
                sent = shipper.sent
                for i in range(2000):
                    log.info("%d %s", i, "y" * 1000)
                time.sleep(0.3)
                assert time.monotonic() - t0 < 60
            assert shipper.connected and shipper._queued > 0  # the sender waits, not emit()
            t0 = time.monotonic()
            for i in range(2000):
                log.info("%d %s", i, "z" * 1000)
            assert time.monotonic() - t0 < 5.0  # generous: microseconds each
            assert shipper.dropped > 0 and shipper._queued <= 200_000 + 2000
        finally:
            t0 = time.monotonic()
            shipper.close()
            assert time.monotonic() - t0 < 5  # the blocked send is cut off


def test_receiver_survives_garbage_oversize_and_senders_leaving_mid_record(caplog):
    got = Collected()
    with LogReceiver(got, port=0, max_bytes=1000) as receiver:
        address = receiver.address
        with socket.create_connection(address) as bad:
            bad.sendall(struct.pack(">L", 5) + b"nope!" + encode_log_record({"msg": "after"}))
            got.wait(1)
        with socket.create_connection(address) as huge:
            huge.sendall(struct.pack(">L", 10_000) + b"x" * 100)
            time.sleep(0.2)
        with socket.create_connection(address) as half:
            half.sendall(encode_log_record({"msg": "cut"})[:10])
        with socket.create_connection(address) as good:
            good.sendall(encode_log_record({"msg": "still %s", "args": ["here"], "levelno": 30}))
            records = got.wait(2)
        receiver.check()
    assert [r.getMessage() for r in records] == ["after", "still here"]
    assert records[1].levelname == "WARNING"
    text = caplog.text
    assert "is not JSON" in text
    assert "10000 bytes announced; the limit is 1000" in text and "disconnected" in text
    assert "closed in the middle of a record" in text


def test_fields_and_records_from_dareplane_style_senders():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "a %s b %s", ("1", 2), None)
    fields = fields_of(record)
    assert fields["args"] == [] and fields["msg"] == "a 1 b 2"
    # dareplane-utils' receiver formats msg % args when the text holds %s: with the
    # % doubled and args empty, that gives the text back instead of failing
    escaped = fields_of(logging.LogRecord("x", 20, __file__, 1, "%s%s%d", ("%s", "%s", 1), None))
    assert escaped["msg"] % escaped["args"] == "%s%s1"
    assert record_from_fields(escaped).getMessage() == "%s%s1"
    # what dareplane-utils' handler sends: args as a JSON list, strings for odd values
    rebuilt = record_from_fields({"name": "dp", "msg": "%s and %s", "args": [1, "b"],
                                  "levelno": 40, "levelname": "ERROR", "created": "12.5",
                                  "exc_info": "None", "exc_text": "None"})
    assert rebuilt.getMessage() == "1 and b" and rebuilt.created == 12.5
    assert rebuilt.exc_text is None and rebuilt.exc_info is None
    mismatch = record_from_fields({"msg": "%s %s", "args": [1]})
    assert mismatch.getMessage() == "%s %s [1]"


# -- against dareplane-utils, each side in a process of its own ------------------------------

# dareplane-utils configures the root logger when imported: it runs in a child.
DAREPLANE_RECEIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from dareplane_utils.logging.server import LogRecordSocketReceiver
    receiver = LogRecordSocketReceiver(host="127.0.0.1", port=0, logfile=Path(sys.argv[1]))
    print(receiver.server_address[1], flush=True)
    receiver.serve_until_stopped()
""")

DAREPLANE_SENDER = textwrap.dedent("""
    import sys
    from dareplane_utils.logging import logger as dplog
    dplog.default_dareplane_config["handlers"]["socket"]["port"] = int(sys.argv[1])
    log = dplog.get_logger("dp-module")
    log.setLevel("DEBUG")
    log.debug("debug from dareplane")
    log.info("two args: %s and %s", 1, "b")
    log.warning("plain warning")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("failed %d time", 1)
""")


def python(code, *args, **kw):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], text=True,
                            env={**os.environ}, **kw)


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_ampkit_logs_receives_dareplane_utils_get_logger_records(tmp_path):
    out_file = tmp_path / "all.log"
    logs = subprocess.Popen(
        [sys.executable, "-m", "ampkit.cli", "logs", "--port", "0", "--file", str(out_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        line = logs.stdout.readline()
        assert line.startswith("receiving log records on 127.0.0.1:"), line
        port = int(line.split("127.0.0.1:")[1].split(";")[0])
        sender = python(DAREPLANE_SENDER, port, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        sender.communicate(timeout=60)
        assert sender.returncode == 0
        assert wait_for(lambda: out_file.exists() and "failed 1 time" in out_file.read_text())
        logs.terminate()  # SIGTERM ends it cleanly
        printed, errors = logs.communicate(timeout=30)
    finally:
        stop(logs)
    assert logs.returncode == 0, errors
    text = out_file.read_text()
    assert " - dp-module - DEBUG - debug from dareplane" in text
    assert " - dp-module - INFO - two args: 1 and b" in text  # dareplane's own receiver fails here
    assert " - dp-module - WARNING - plain warning" in text
    assert " - dp-module - ERROR - failed 1 time" in text
    assert "ZeroDivisionError" in text  # the exception, as text
    assert text.strip() in printed  # the same lines on stdout
