from concurrency.build_check import refuse_stale

refuse_stale(__path__[0])  # a compiled module older than its source must not run (setup.py)
