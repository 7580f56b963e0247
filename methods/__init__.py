"""Training methods: one module per method, each registering its class in ``bench.registry.METHODS``
(``@METHODS.register``, keyed by the class's ``name``). Every module of this package is imported
(:func:`bench.registry.discover`): a new ``methods/<file>.py`` is found without editing a list."""

from bench.registry import discover

discover(__name__, __path__)
