"""Evaluation: the IWAE log-likelihood (likelihood), how a non-doubling VNCA
regrows (healing), the paper's figures (figures) and the reports (reports),
for any model of the models.GenerativeModel interface."""
