"""Measuring ipmcam: the benchmark (``bench``), the soak test (``soak``) and the quality evaluation (``eval``)."""
