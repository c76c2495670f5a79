"""Test helpers shipped with the package: local exchange servers, shared-data lookup, CLI runs."""
