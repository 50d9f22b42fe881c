"""Long work: the fetch queue, its durable journal, and download progress.

May import: ``sysadmd.backends``, ``sysadmd.api``, ``sysadmd.config``, ``sysadmd.shared``.
"""
