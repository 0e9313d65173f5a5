"""Sans-I/O codecs of device protocols."""
