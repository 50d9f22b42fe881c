"""Small helpers that import nothing from the rest of sysadmd.

The daemon and the client (``sysadmd.client``) may both use them: durable files and the one
JSON-file store (``files``), the one-shot waiter (``observer``), the redaction of URL
credentials and the cut of long output (``text``), and the task states on the wire
(``taskstate``).
"""
