"""The vocabulary of a call and the one corridor every call goes through.

Errors and their codes, roles, the calling connection and identity (``calls``), argument
validation, the registry that declares each action once, the envelope codec, the
transport-neutral core that runs a call (``dispatch``), and the event hub that delivers events
to subscribers.

May import: ``sysadmd.config`` and ``sysadmd.shared`` (the contracts are in ``.importlinter``).
"""
