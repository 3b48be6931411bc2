"""Tests of the Triton serving path: repository export, the Python steps, and a real tritonserver."""
