"""How runs run: the driver that claims, dispatches and stores them (runner), a run as a
picklable job (jobs) trained by Lightning (training), the launchers that carry jobs to
processes, Ray or SLURM (launchers), and what a run records about itself (provenance,
progress, interrupts, the W&B mirror). Builds on suite and store."""
