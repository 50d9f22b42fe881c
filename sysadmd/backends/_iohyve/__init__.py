"""iohyve: command lines, output parsers and the adapter the handlers call."""
