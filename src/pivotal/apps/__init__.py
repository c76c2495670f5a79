"""User-facing applications: the CLI (later the API and the dashboard). May import anything."""
