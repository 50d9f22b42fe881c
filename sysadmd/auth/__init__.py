"""Who is calling and what they may do.

The authenticator and its sessions, lockout, audit log, local accounts and the sources that
check a password (local, PAM), SSL key logins (``keys``), the control socket and the
``sysadmd-admin`` command line.

May import: ``sysadmd.tasks``, ``sysadmd.backends``, ``sysadmd.api``, ``sysadmd.config``,
``sysadmd.shared``.
"""
