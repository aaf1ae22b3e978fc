"""vnca_tf: Variational Neural Cellular Automata in TensorFlow 2, Keras 3 and TFP."""
