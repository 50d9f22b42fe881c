"""The sysadm API classes: one module per class.

``rpc`` (logins, queries, settings), ``dispatcher`` (queued work), ``events``
(subscriptions and the guests poller), ``host`` (``sysadm/zfs`` and ``sysadm/network``) and
``iohyve`` (``sysadm/iohyve``).

May import: ``sysadmd.auth`` and every layer below it. One service never imports another:
what two of them need (the host's pools, for ``iohyve``'s setup) comes from the layer below
(:mod:`sysadmd.backends.hosttools`).
"""
