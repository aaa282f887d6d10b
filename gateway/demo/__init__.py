"""Demo and test helpers for Shuhi: a fake upstream AI provider (see :mod:`gateway.demo.upstream`)."""
