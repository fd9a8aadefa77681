"""The adaptive driver behind :func:`physres.integrate`: control, the two loops."""
