"""What every layer and script shares, without TensorFlow: one-line errors and
TensorFlow's quiet start-up (cli), the console, faults of the machine, stopping
on signals, the run's lock, the watcher of a cluster's wait, and bits/dim."""
