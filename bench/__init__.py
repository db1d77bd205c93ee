import models  # noqa: F401  (first: OpenMP's spin is set before anything loads torch: models/_threads.py)
