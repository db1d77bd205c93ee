import models  # noqa: F401  (first: OpenMP's wait policy is set before anything loads torch; models/_threads.py)
