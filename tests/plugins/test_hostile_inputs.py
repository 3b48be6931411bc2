"""Plugin inputs checked where they enter (issue 25): non-finite rois pool to zero, attributes are bounded.

An FP16 box decode that overflows hands ROI pooling an infinite coordinate, and a crafted model can carry any
attribute. On d76de52 the first crashed the CPU reference (a NaN sample position cast to an index read far
outside the feature map) and a huge ``sampling_ratio`` looped for ever. The math is the one header the CPU
reference and the CUDA kernel share (``plugins_cuda/include/mrd/roi_align_math.h``); the GPU check runs the
CUDA side of the same cases (``tests/plugins/test_gpu.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.plugins.library import PluginCallError
from runtime.plugins.reference import multilevel_roi_align_reference
from runtime.plugins.spec import MultiLevelRoiAlignAttrs

FEATURES = [np.random.default_rng(0).standard_normal((1, 3, 32 // 2**i, 48 // 2**i)).astype(np.float32)
            for i in range(4)]  # fmt: skip
GOOD = [10.0, 12.0, 60.0, 70.0]


@pytest.mark.parametrize("aligned", [0, 1])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_non_finite_rois_pool_to_zero_and_leave_the_others_alone(aligned: int, sampling_ratio: int) -> None:
    inf, nan = float("inf"), float("nan")
    bad = [[inf, 0, 10, 10], [0, 0, inf, inf], [-inf, -inf, 5, 5], [nan, 0, 10, 10], [0, 0, nan, nan],
           [0, -inf, 10, inf], [1e30, 1e30, 3e38, 3e38]]  # fmt: skip
    attrs = MultiLevelRoiAlignAttrs(7, 7, sampling_ratio, aligned)
    out = multilevel_roi_align_reference(np.array([[GOOD, *bad]], np.float32), FEATURES, attrs)
    alone = multilevel_roi_align_reference(np.array([[GOOD]], np.float32), FEATURES, attrs)
    assert np.array_equal(out[0], alone[0])  # the good roi is untouched by its neighbours
    assert np.isfinite(out).all()
    assert not out[1:7].any()  # every roi with a non-finite coordinate pools to zero


def test_a_huge_roi_with_adaptive_sampling_ends() -> None:
    """ceil(roi_size / output_size) samples per bin side is capped (MRD_MAX_SAMPLING, 128): a roi 1e9 px wide
    takes 128 x 128 samples a bin, not 10^16; a roi inside the image never reaches the cap."""
    attrs = MultiLevelRoiAlignAttrs(7, 7, 0)
    out = multilevel_roi_align_reference(np.array([[[0, 0, 1e9, 1e9]]], np.float32), FEATURES, attrs)
    assert out.shape == (1, 3, 7, 7) and np.isfinite(out).all()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("sampling_ratio", 1_000_000, "sampling_ratio must be at most 128"),
     ("output_height", 100_000, "output_height and output_width must lie in [1, 1024]")],
)  # fmt: skip
def test_unbounded_attributes_are_refused_with_one_line(field: str, value: int, message: str) -> None:
    attrs = MultiLevelRoiAlignAttrs(**{field: value})
    with pytest.raises(PluginCallError, match=message.replace("[", r"\[").replace("]", r"\]")):
        multilevel_roi_align_reference(np.array([[GOOD]], np.float32), FEATURES, attrs)


def test_roi_align_reference_fuzzed() -> None:
    """Any rois (inf, nan, huge, inverted) and attributes in or out of their bounds: pooled values that are
    finite, or a PluginCallError / ValueError naming the problem; never a crash or a hang."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    coords = st.one_of(
        st.floats(-1e4, 1e4), st.sampled_from([float("inf"), -float("inf"), float("nan"), 1e30, -1e30, 0.0])
    )
    rng = np.random.default_rng(0)
    features = [rng.standard_normal((1, 2, s, s)).astype(np.float32) for s in (16, 8, 4, 2)]

    @settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(coords, coords, coords, coords), min_size=1, max_size=6),
           st.integers(-3, 200), st.integers(-2, 40), st.integers(0, 1), st.integers(0, 1))  # fmt: skip
    def check(rois: list, sampling: int, side: int, aligned: int, plus_one: int) -> None:
        attrs = MultiLevelRoiAlignAttrs(output_height=side, output_width=max(side, 1), sampling_ratio=sampling,
                                        aligned=aligned, legacy_plus_one=plus_one,
                                        spatial_scales=(0.25, 0.125, 0.0625, 0.03125))  # fmt: skip
        try:
            out = multilevel_roi_align_reference(np.asarray([rois], np.float32), features, attrs)
        except (PluginCallError, ValueError):
            return
        assert out.shape == (len(rois), 2, side, max(side, 1))
        assert np.isfinite(out).all()

    check()
