"""Workflows: long jobs as generators of typed events.

The CLI, the widgets and the tests consume the same generators.
"""
