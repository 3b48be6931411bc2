"""Serving with Triton Inference Server: the repository's contract, its config check, the Python-backend steps,
the bundled server, the client and the serving benchmark. Nothing here needs torch; the steps run in the
Triton Python backend's own interpreter (``.venv-serving``)."""
