"""What to run: the suite files (bench/suites/*.yaml) read into profiles and resolved into
run configs (suites), the parameter-budget matcher (budget) and the learning-rate tuning
protocol (tuning). Reads the store (tuning's choices) and models/tasks; never trains."""
