"""The ops dashboard: HTML pages (pages.py), their JSON API (api.py), credentials and CSRF (auth.py).

`dashboard_routes` mounts all of it; `receiver.app` adds the routes only when a token is configured.
"""

from receiver.dashboard.auth import DashboardAuth
from receiver.dashboard.pages import dashboard_routes

__all__ = ["DashboardAuth", "dashboard_routes"]
