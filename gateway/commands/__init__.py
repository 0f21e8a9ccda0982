"""Command groups of the ``switchyard`` CLI, one module each (see ``gateway/cli.py``)."""
