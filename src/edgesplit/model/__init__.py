"""The model: DNN profiles and partition tables, scenarios as PyTrees, the schemes, and
the paper's delay and utility equations (2)-(11). Array functions of one scenario."""
