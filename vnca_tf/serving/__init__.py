"""Serving: the SavedModel and its checked signatures (export, input_checks),
an export seen as a model (loaded), the browser demo's graphs, their
TensorFlow.js conversion (browser_graphs, tfjs) and the demo's server."""
