"""Workflows: long jobs as generators of typed events, shared by the CLI, the widgets and the tests."""
