"""Workflows: the deterministic "brain". No I/O here; activities do the work.

Empty on purpose: the workflow sandbox runs this file whenever one workflow module is imported,
so it must not import the others (the plugin lists the workflow classes in ``_plugin.WORKFLOWS``).
"""
