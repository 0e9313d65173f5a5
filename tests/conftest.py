"""Test-wide setup.

liblsl discovers streams by multicast unless configured otherwise; every test
that touches LSL must stay on this machine's loopback. LSLAPICFG has to be set
before pylsl is first imported, which is why it happens here, at collection.
"""

import os
from pathlib import Path

LSL_CONFIG = Path(__file__).with_name("lsl-loopback.cfg")
os.environ["LSLAPICFG"] = str(LSL_CONFIG)
# amp.start() opens marker servers on port 12344 by default; test runs (and
# benchmarks) sharing a machine would collide there, so tests use free ports.
os.environ.setdefault("AMPKIT_MARKER_PORT", "0")
