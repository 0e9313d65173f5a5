"""The format table (ampkit/io/formats.py): suffixes, options, and formats of other packages."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import ampkit
from ampkit.errors import ConfigurationError
from ampkit.io.formats import BUILTIN, format_for, formats, open_writer, read
from ampkit.io.writer import Header


def test_every_suffix_names_one_format():
    table = formats()
    assert {fmt.name for fmt in table.values()} >= {"brainvision", "bdf", "edf", "xdf"}
    for fmt in BUILTIN:
        for suffix in fmt.suffixes:
            assert table[suffix] is fmt
    assert format_for("S1.BDF").name == "bdf"
    assert format_for("subject1.run2").name == "brainvision"  # a base name
    assert format_for("rec").name == "brainvision"


def test_options_that_belong_to_other_formats_are_refused_naming_them(tmp_path):
    with pytest.raises(ConfigurationError, match="stim_channel= applies to BDF/EDF files only"):
        read(tmp_path / "x.xdf", stim_channel=None)
    with pytest.raises(ConfigurationError, match="stream= applies to XDF files only"):
        read(tmp_path / "x.bdf", stream="EEG")
    with pytest.raises(ConfigurationError, match="physical_max= applies to BDF files only"):
        open_writer(tmp_path / "x.xdf", Header(["a"], 10.0), physical_max=100)
    with pytest.raises(ConfigurationError, match="unknown options for bdf"):
        open_writer(tmp_path / "x.bdf", Header(["a"], 10.0), level=3)
    with pytest.raises(ConfigurationError, match="use .bdf"):
        open_writer(tmp_path / "x.edf", Header(["a"], 10.0))
    assert list(tmp_path.iterdir()) == []


TSV = '''
    import numpy as np
    from ampkit.io.formats import Format
    from ampkit.io.recording import Recording
    from ampkit.io.writer import FormatWriter, create_file, write_all


    class TSVWriter(FormatWriter):
        format = "tsv"

        def __init__(self, path, header, overwrite=False, decimals=6):
            super().__init__(path, header, overwrite)
            self.paths = [self.path]
            self.decimals = decimals
            self.fd = create_file(self.path, overwrite)
            write_all(self.fd, ("\\t".join(header.channels) + "\\n").encode(), self.path)

        def write(self, data, timestamps, marks):
            rows = "".join("\\t".join(f"{v:.{self.decimals}f}" for v in row) + "\\n"
                           for row in data)
            self.bytes_written += write_all(self.fd, rows.encode(), self.path)

        def close(self):
            import os
            os.close(self.fd)


    def read_tsv(path, skip=0):
        lines = open(path).read().splitlines()
        lines = lines[:1] + lines[1 + skip:]
        data = np.array([[float(v) for v in line.split("\\t")] for line in lines[1:]],
                        np.float32).reshape(-1, len(lines[0].split("\\t")))
        return Recording(data, 100.0, lines[0].split("\\t"), ["µV"] * data.shape[1],
                         path=path, format="tsv")


    TSV = Format("tsv", "TSV", (".tsv",), TSVWriter, read_tsv, ("decimals",), ("skip",))
    STEALS_BDF = Format("bdf2", "BDF2", (".bdf",), TSVWriter, read_tsv)
'''


def test_a_format_from_an_entry_point_records_and_reads(install_plugin, tmp_path, caplog):
    install_plugin("ampkit_tsv", TSV, {"ampkit.formats": {
        "tsv": "ampkit_tsv:TSV", "bdf2": "ampkit_tsv:STEALS_BDF", "broken": "ampkit_tsv:NONE",
    }})
    table = formats()
    assert table[".tsv"].name == "tsv"
    assert table[".bdf"].name == "bdf"  # ampkit's suffix stays ampkit's
    assert "format 'bdf2' (ampkit_tsv:STEALS_BDF) left out" in caplog.text
    assert "format 'broken' (ampkit_tsv:NONE) failed to import" in caplog.text
    caplog.clear()
    # Through the whole stack: start(filename=...) -> Recorder -> the table.
    amp = ampkit.get_amp("sine", fs=100, channels=2)
    path = tmp_path / "run.tsv"
    amp.start(filename=str(path), marker_port=None)
    n = 0
    while n < 20:
        n += len(amp.get_data()[0])
    amp.stop()
    rec = ampkit.io.read(path)
    assert rec.format == "tsv" and rec.channels == amp.get_channels()
    assert rec.data.shape == (n, 2)
    with pytest.raises(ConfigurationError, match="stream= applies to XDF"):
        ampkit.io.read(path, stream="EEG")
    assert ampkit.io.read(path, skip=5).data.shape == (n - 5, 2)  # the format's own option
    with pytest.raises(ConfigurationError, match="skip= applies to TSV files only"):
        ampkit.io.read(tmp_path / "x.xdf", skip=5)
    writer = open_writer(tmp_path / "two.tsv", Header(["a"], 10.0), decimals=1)
    writer.write(np.array([[1.25]], np.float32), np.zeros(1), [])
    writer.close()
    assert_array_equal(read(tmp_path / "two.tsv").data, np.float32([[1.2]]))
    assert "left out" not in caplog.text  # said once, not at every lookup
