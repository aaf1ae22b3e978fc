"""Training: the state a checkpoint holds (state), the step (step), the loop
(loop), and what they use: the run folder, the pool, Adam as PyTorch computes
it, microbatches, loss scaling, the tf.distribute strategy, summaries."""
