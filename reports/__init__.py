"""Report templates (``reports/templates/``); runs write their reports beside them, in ``reports/<run-id>/``.

A package so that an installed wheel carries the templates and the tool finds them through
``importlib.resources``.
"""
