"""Transports: turn bytes into a request and a reply back into bytes.

REST (Klein), WebSocket (Autobahn), the connection limits they share, and the TLS context.

May import: ``sysadmd.catalog`` and every layer below it; never ``sysadmd.ops`` or the app.
"""
