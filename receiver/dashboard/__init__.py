"""The ops dashboard: routes (pages.py), the HTML of each page (views.py) and its building blocks
(markup.py), the JSON API and the data behind both (api.py), credentials and CSRF (auth.py).

`dashboard_routes` mounts all of it; `receiver.app` adds the routes only when a token is configured.
"""

from receiver.dashboard.auth import DashboardAuth
from receiver.dashboard.pages import dashboard_routes

__all__ = ["DashboardAuth", "dashboard_routes"]
