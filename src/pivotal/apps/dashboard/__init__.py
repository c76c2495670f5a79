"""The dashboard: a Dash page that reads the API only (REST + the WebSocket) from the browser.

:func:`create_dashboard` builds the Dash app (the page's static shell); everything it shows is
fetched and kept live by the JavaScript in ``assets/`` running in the browser, with the user's
bearer token. No server-side callback touches pivotal data, so this package imports nothing of
pivotal: the API server mounts ``create_dashboard(prefix).server`` (a Flask app) at ``prefix``.
"""

from pivotal.apps.dashboard.app import DEFAULT_BARS, create_dashboard

__all__ = ["DEFAULT_BARS", "create_dashboard"]
