"""vm-bhyve: parsers for the ``vm`` command's output and the files it keeps."""
