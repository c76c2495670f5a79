"""One query and command layer under the CLI, the API and the dashboard (Stage 11)."""
