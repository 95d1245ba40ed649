"""Batches and sweeps: topology sampling, the game queue (``solve_batch``), the chunk
programs, the store and its schema, running and resuming, scale-out, the compile cache."""
