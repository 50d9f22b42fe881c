"""sysadmd: the sysadm iohyve API over REST and WebSocket, served by one Twisted daemon."""

__version__ = "0.1.0"
