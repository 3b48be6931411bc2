from pathlib import Path

import pytest

from tests.common import REPO, SHAPES_CONFIG
from trainer.config import ConfigError, load_config


def test_yaml_then_overrides() -> None:
    cfg = load_config(SHAPES_CONFIG, ["SOLVER.BASE_LR", "0.005", "INPUT.MIN_SIZE_TRAIN", "(200, 300)"])
    assert cfg.MODEL.BACKBONE.CONV_BODY == "R-18-FPN"  # from the YAML
    assert cfg.MODEL.RPN.ANCHOR_SIZES == (16, 32, 64, 128, 256)  # YAML tuple text parsed
    assert cfg.SOLVER.BASE_LR == 0.005
    assert cfg.INPUT.MIN_SIZE_TRAIN == (200, 300)
    assert cfg.is_frozen()


def test_int_accepted_for_float_and_bool_words() -> None:
    cfg = load_config(None, ["SOLVER.BASE_LR", "1", "MODEL.MASK_ON", "false", "INPUT.MIN_SIZE_TRAIN", "640"])
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.MODEL.MASK_ON is False
    assert cfg.INPUT.MIN_SIZE_TRAIN == (640,)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["SOLVER.BASE_LRR", "0.1"], r"SOLVER\.BASE_LRR.*did you mean SOLVER\.BASE_LR"),
        (["BASE_LR", "0.1"], r"did you mean .*SOLVER\.BASE_LR"),
        (["SOLVER.MAX_ITER", "many"], r"SOLVER\.MAX_ITER .*wants a int.*got str 'many'"),
        (["SOLVER.STEPS", "('a', 'b')"], r"SOLVER\.STEPS"),
    ],
    ids=["typo", "short-name", "wrong-type", "wrong-tuple-type"],
)
def test_bad_override_names_the_key(opts: list[str], message: str) -> None:
    """An unknown key names the closest valid ones; a wrongly typed value names the key and the type."""
    with pytest.raises(ConfigError, match=message):
        load_config(None, opts)


def test_unknown_key_in_yaml_names_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("MODEL:\n  MASK_ONN: True\n")
    with pytest.raises(ConfigError, match=r"MODEL\.MASK_ONN' in .*bad\.yaml.*MODEL\.MASK_ON"):
        load_config(f)


def test_pairs_and_files_and_cross_checks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        load_config(None, ["SOLVER.BASE_LR"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="CONV_BODY"):
        load_config(None, ["MODEL.BACKBONE.CONV_BODY", "R-152-FPN"])
    with pytest.raises(ConfigError, match="STEPS must increase"):
        load_config(None, ["SOLVER.STEPS", "(5, 3)"])
    with pytest.raises(ConfigError, match="LR_SCHEDULER_NAME must be .*WarmupCosineLR.*not 'Cosine'"):
        load_config(None, ["SOLVER.LR_SCHEDULER_NAME", "Cosine"])
    with pytest.raises(ConfigError, match="BASE_WIDTH must be positive"):
        load_config(None, ["MODEL.BACKBONE.BASE_WIDTH", "0"])
    with pytest.raises(ConfigError, match="only applies to ResNets.*MNV3-FPN"):
        load_config(None, ["MODEL.BACKBONE.CONV_BODY", "MNV3-FPN", "MODEL.BACKBONE.BASE_WIDTH", "32"])


#: what each shipped config must say: (classes incl. background, backbone, masks, keypoints, test short side)
SHIPPED = {
    "e2e_mask_rcnn_R_50_FPN_1x.yaml": (91, "R-50-FPN", True, False, 800),
    "e2e_faster_rcnn_R_50_FPN_1x.yaml": (91, "R-50-FPN", False, False, 800),
    "e2e_keypoint_rcnn_R_50_FPN_1x.yaml": (2, "R-50-FPN", False, True, 800),
    "shapes_mask_rcnn_R_18_FPN.yaml": (6, "R-18-FPN", True, False, 256),
}


def test_every_shipped_config_is_known() -> None:
    assert sorted(p.name for p in (REPO / "configs").glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_config_loads(name: str) -> None:
    cfg = load_config(REPO / "configs" / name)
    classes, body, mask, keypoint, min_size_test = SHIPPED[name]
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == classes
    assert cfg.MODEL.BACKBONE.CONV_BODY == body
    assert (cfg.MODEL.MASK_ON, cfg.MODEL.KEYPOINT_ON) == (mask, keypoint)
    assert cfg.INPUT.MIN_SIZE_TEST == min_size_test
    if name.startswith("shapes"):
        from trainer.shapes import SHAPES_CLASSES

        assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1 + len(
            SHAPES_CLASSES
        )  # background + the generator's classes


def test_hostile_yaml_is_refused_in_one_line_before_it_is_built(tmp_path) -> None:
    """Issue 25: a recursive alias was a RecursionError traceback, a 316-byte alias bomb expanded to millions of
    values, a binary file a UnicodeDecodeError traceback; each is now a ConfigError naming the file."""
    import pytest

    from trainer.config import ConfigError, load_config

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join(['*' + chr(96 + i)] * 9)}]\n" for i in range(1, 9)
    ) + "MODEL: *i\n"  # fmt: skip
    cases = {
        "recursive.yaml": (b"MODEL: &a {X: *a}\n", "is recursive"),
        "bomb.yaml": (bomb.encode(), "expands to more than 100000 values"),
        "binary.yaml": (bytes(range(256)) * 4, "is not text"),
        "deep.yaml": (("MODEL: " + "{a: " * 40 + "1" + "}" * 40 + "\n").encode(), "nests deeper than 32"),
        # 20 levels under an anchor, used again 14 levels down: 34 deep only once the alias is expanded
        "alias_deep.yaml": (
            (
                "a: &a " + "{x: " * 20 + "1" + "}" * 20 + "\nb: " + "{y: " * 13 + "*a" + "}" * 13 + "\n"
            ).encode(),
            "nests deeper than 32",
        ),  # fmt: skip
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ConfigError, match=message) as e:
            load_config(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_config_loading_fuzzed(tmp_path) -> None:
    """Random byte edits and cuts of the shipped config: a config or a one-line ConfigError, nothing else."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.common import SHAPES_CONFIG
    from trainer.config import ConfigError, load_config

    base = SHAPES_CONFIG.read_bytes()
    path = tmp_path / "fuzzed.yaml"

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.integers(0, len(base) - 1), st.sampled_from(b"&*:{}[]-|>!%@`'\"\n\t #x0\xff")),
                    min_size=1, max_size=6), st.integers(1, len(base)))  # fmt: skip
    def check(edits: list[tuple[int, int]], cut: int) -> None:
        data = bytearray(base)
        for at, value in edits:
            data[at] = value
        path.write_bytes(bytes(data[:cut]))
        try:
            load_config(path)
        except ConfigError as e:
            assert "\n" not in str(e).strip()

    check()
