"""Jinja2 templates of every object udn-rollout creates (``*.yaml.j2``).

A package so that an installed wheel carries the templates and the tool finds them through
``importlib.resources``; ``udn-rollout render`` writes the same objects for review and ``oc apply``.
"""
