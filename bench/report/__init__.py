"""What the runs say: leaderboard tables and plots built from a store (leaderboard, plots),
their statistics (stats), and `cwbench verify`, which reruns rows and judges them (verify).
Builds on store, suite and sweep."""
