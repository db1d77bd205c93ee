"""Measuring the tool itself (`cwbench perf`), not the architectures.

- kernels.py: how fast each CW-RNN backend and the rnn/gru implementations are next to
  torch's RNN, LSTM and GRU kernels (results/speed/speed_<device>.*);
- store.py: what the results store costs as it grows (results/speed/store_cpu.*);
- interference.py: whether a training run slows down after other runs in the same
  process (results/speed/interference_cpu.*);
- overhead.py: what a suite run costs beyond its training loop, and a whole profile's wall
  time (results/speed/overhead_cpu.*);
- options.py: each tool's typed options and their command-line arguments (torch-free).
- tables.py: the provenance header and the .csv/.md pair that interference and overhead write.

perf sits on top of the rest of bench (it times the store, trains with the sweep's code);
nothing in bench imports it but the command line.
"""
