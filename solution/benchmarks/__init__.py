"""Benchmarks of the kit's library code; each module's ``run()`` returns its figures by name."""
