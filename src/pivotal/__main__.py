"""``python -m pivotal`` runs the command line."""

from pivotal.apps.cli import main

main()
