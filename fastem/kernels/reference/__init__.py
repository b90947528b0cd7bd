"""numpy reference kernels: plain, obviously correct, float64 accumulation."""
