"""dareplane-utils' RingBuffer and StreamWatcher, imported without side effects.

Importing dareplane_utils runs ``logging.config.dictConfig`` on the root
logger: it disables every logger that exists at that moment (``ampkit``
among them, which silences other tests' ``caplog``) and adds a console
handler and a socket handler to 127.0.0.1:9020. The tests compare against
dareplane's classes as a reference, so import them here and put the logging
state back the way it was.
"""

import logging
import logging.handlers


def _import_quietly():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    disabled = {
        name: logger.disabled
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    try:
        from dareplane_utils.general.ringbuffer import RingBuffer
        from dareplane_utils.stream_watcher.lsl_stream_watcher import StreamWatcher
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, logger in logging.root.manager.loggerDict.items():
            if isinstance(logger, logging.Logger):
                logger.disabled = disabled.get(name, False)
    # dareplane's own loggers got the socket handler too: drop it, and keep
    # their warnings about empty chunks out of the test output
    for name, logger in logging.root.manager.loggerDict.items():
        if name.startswith("dareplane_utils") and isinstance(logger, logging.Logger):
            logger.handlers = [
                h for h in logger.handlers if not isinstance(h, logging.handlers.SocketHandler)
            ]
    logging.getLogger("dareplane_utils").setLevel(logging.ERROR)
    return RingBuffer, StreamWatcher


DareplaneRingBuffer, DareplaneStreamWatcher = _import_quietly()
