"""The two custom ops of the `trt` ONNX flavor and the libraries of ``plugins_cuda/`` that compute them.

One module per idea, imported by name (this package re-exports nothing, so importing one part never pulls
in another's dependencies):

- :mod:`runtime.plugins.spec`: the op spec (names, domain, version, attributes); the one written-down copy.
- :mod:`runtime.plugins.abi`: ctypes mirrors of the C structs of ``plugins_cuda/include/mrd/c_api.h``.
- :mod:`runtime.plugins.library`: finding and loading the built ``.so`` files.
- :mod:`runtime.plugins.reference`: the ops on numpy arrays, computed by ``libmrd_host.so`` (CPU).
- :mod:`runtime.plugins.cuda`: the ops on torch CUDA tensors, computed by ``libmrd_kernels.so``.
- :mod:`runtime.plugins.ort_reference`: `trt`-flavor graphs on ONNX Runtime's CPU through the reference.

Building the libraries is not part of the deployed runtime: ``scripts/build_plugins.py`` does it.
"""
