"""The web dashboard: its built files and the resource that serves them at ``/ui/``."""

from sysadmd.web._static import Dashboard, WithDashboard

__all__ = ["Dashboard", "WithDashboard"]
