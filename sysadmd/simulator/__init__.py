"""A simulator of the iohyve command-line tool, for machines without bhyve."""
