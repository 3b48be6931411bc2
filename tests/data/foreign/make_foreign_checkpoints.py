# ruff: noqa: UP031  (printf-style log lines)
"""Make the foreign-checkpoint test data: small random checkpoints saved by maskrcnn-benchmark's and
detectron2's own checkpointers, their configs, and reference detections computed by each project's
own inference code.

Neither project's code is in this repository: pass the paths of their source trees. Their compiled ops
are replaced by foreign_shims.py (ours). See README.md for the exact commands.

    python make_foreign_checkpoints.py images --skimage-data <skimage/data>
    python make_foreign_checkpoints.py model <id> --mrb-src <mrb> --d2-src <d2>

with the sources' pure-Python dependencies on PYTHONPATH (README.md lists them).

One model per process (ids: see MODELS). Deterministic: seeded per model, single-threaded.
"""

import argparse
import gzip
import json
import os
import pickle
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES_DIR = os.path.join(HERE, "images")

# id: (source, config path inside the source tree, seed)
MODELS = {
    "mrb_mask_rcnn_R_50_FPN_1x": ("mrb", "configs/e2e_mask_rcnn_R_50_FPN_1x.yaml", 111),
    "d2_mask_rcnn_R_50_FPN_1x": ("d2", "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", 201),
    "mrb_mask_rcnn_R_50_FPN_1x_caffe2": ("mrb", "configs/caffe2/e2e_mask_rcnn_R_50_FPN_1x_caffe2.yaml", 102),
    "mrb_faster_rcnn_R_50_FPN_1x": ("mrb", "configs/e2e_faster_rcnn_R_50_FPN_1x.yaml", 133),
    "d2_faster_rcnn_R_50_FPN_1x": ("d2", "configs/COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml", 212),
    "d2_mask_rcnn_R_50_FPN_3x": ("d2", "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml", 203),
    "mrb_keypoint_rcnn_R_50_FPN_1x": ("mrb", "configs/e2e_keypoint_rcnn_R_50_FPN_1x.yaml", 104),
}
# the mrb checkpoint written as a DistributedDataParallel run writes it ("module." prefix)
DDP_PREFIXED = {"mrb_faster_rcnn_R_50_FPN_1x"}

# Narrowing: every structural choice of the config kept, only widths reduced.
MRB_NARROW = {
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 8,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 6,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 24,
    "MODEL.RESNETS.BACKBONE_OUT_CHANNELS": 32,
    "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM": 64,
}
MRB_NARROW_MASK = {"MODEL.ROI_MASK_HEAD.CONV_LAYERS": (32, 32, 32, 32)}
MRB_NARROW_KP = {"MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS": (34,) * 8}
D2_NARROW = {
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 8,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 6,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 24,
    "MODEL.FPN.OUT_CHANNELS": 32,
    "MODEL.ROI_BOX_HEAD.FC_DIM": 64,
}
D2_NARROW_MASK = {"MODEL.ROI_MASK_HEAD.CONV_DIM": 32}

# (file name, skimage source, crop box in the source (left, top, right, bottom), output W x H)
IMAGES = [
    ("coffee_480x640.jpg", "coffee.png", (33, 0, 567, 400), (640, 480)),
    ("astronaut_512x361.jpg", "astronaut.png", (60, 0, 421, 512), (361, 512)),
    ("rocket_611x1999.jpg", "rocket.jpg", (0, 30, 640, 226), (1999, 611)),
    ("chelsea_300x400.jpg", "chelsea.png", (25, 0, 425, 300), (400, 300)),
]
CALIBRATION_IMAGE = "coffee_480x640.jpg"


# ----------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------
def make_images(skimage_data):
    from PIL import Image

    os.makedirs(IMAGES_DIR, exist_ok=True)
    for name, src, crop, size in IMAGES:
        im = Image.open(os.path.join(skimage_data, src)).convert("RGB").crop(crop)
        im = im.resize(size, Image.LANCZOS)
        out = os.path.join(IMAGES_DIR, name)
        im.save(out, quality=90)
        print(name, im.size, os.path.getsize(out), "bytes")


def load_images():
    """Decoded exactly as both sources' demos do: cv2.imread, BGR uint8."""
    import cv2

    out = []
    for name, _, _, _ in IMAGES:
        bgr = cv2.imread(os.path.join(IMAGES_DIR, name), cv2.IMREAD_COLOR)
        out.append((name, bgr))
    return out


# ----------------------------------------------------------------------------------------------
# weights that fire (ours; applied to either project's model by module name)
# ----------------------------------------------------------------------------------------------
def perturb_frozen_bn(model, g):
    """Random affine FrozenBatchNorm statistics, ~10% of channels with running_var 1e-4 and a
    weight of ~0.01 (an effective scale ~1 without eps, ~0.95 with eps=1e-5), so that ignoring or
    adding BatchNorm's eps moves the features measurably."""
    import torch

    n = 0
    for _name, m in model.named_modules():
        if type(m).__name__ != "FrozenBatchNorm2d":
            continue
        c = m.weight.numel()
        w = torch.empty(c).uniform_(0.7, 1.3, generator=g)
        b = torch.randn(c, generator=g) * 0.05
        mean = torch.randn(c, generator=g) * 0.05
        var = torch.empty(c).uniform_(0.6, 1.6, generator=g)
        tiny = torch.rand(c, generator=g) < 0.1
        var[tiny] = 1e-4
        w[tiny] = w[tiny] * 0.01
        m.weight.copy_(w)
        m.bias.copy_(b)
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        n += 1
    return n


def unit_rms_frozen_bn_(model, run, image):
    """Layer-sequential unit variance: in one forward pass, in execution order, every FrozenBatchNorm's
    weight and bias are divided by the rms of its output (which is rescaled the same way before the
    next layer sees it), so the backbone's activations stay O(1) (also within FP16 range)."""
    hooks, scales = [], []

    def hook(m, inp, out):
        rms = float(out.pow(2).mean().sqrt().clamp_min(1e-6))
        m.weight.div_(rms)
        m.bias.div_(rms)
        scales.append(rms)
        return out / rms

    for _, m in model.named_modules():
        if type(m).__name__ == "FrozenBatchNorm2d":
            hooks.append(m.register_forward_hook(hook))
    try:
        run(image)
    finally:
        for h in hooks:
            h.remove()
    return scales


def blur_conv_(conv, g, skew=None, groups=None):
    """A conv whose weights are a positive 3x3 blur, so that zero padding makes a dome that peaks
    inside the RoI: masks and heatmaps with structure instead of noise. skew[o] = (dy, dx) moves the
    kernel mass of output channel o; groups[o] restricts output o to inputs of the same group."""
    import torch

    cout, cin, kh, kw = conv.weight.shape
    base = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])
    w = torch.zeros(cout, cin, kh, kw)
    for o in range(cout):
        k = base.clone()
        if skew is not None:
            dy, dx = skew[o]
            k = k.clone()
            k[1 + dy, 1 + dx] += 6.0
        k = k / k.sum()
        mix = 1.0 + 0.5 * torch.rand(cin, generator=g)
        if groups is not None:
            mix = mix * (groups == groups[o]).float()
        mix = mix / mix.sum()
        w[o] = mix[:, None, None] * k[None]
    conv.weight.copy_(w)
    conv.bias.zero_()


def calibrate_linear_(lin, feats, out_std, g, groups=None, whiten=False):
    """Random weights, centred and scaled on the observed features: outputs with mean 0 and std
    out_std, varying from RoI to RoI (uncentred ReLU features would give every RoI the same ranking
    of classes). whiten: independent outputs (classes) despite correlated features. groups (one
    feature block per image): weights orthogonal to the differences between the images' mean
    features, so that no image gets all or none of the detections. nn.Linear or 1x1 conv."""
    import torch

    shape = lin.weight.shape
    w = torch.randn(shape[0], shape[1], generator=g, dtype=torch.float64)
    f = feats.double()
    mu = f.mean(0)
    fc = f - mu
    if whiten:
        cov = fc.t() @ fc / fc.shape[0]
        cov = cov + 1e-3 * cov.diagonal().mean() * torch.eye(cov.shape[0], dtype=cov.dtype)
        evals, evecs = torch.linalg.eigh(cov)
        w = w @ (evecs @ torch.diag(evals.rsqrt()) @ evecs.t())
    if groups is not None and len(groups) > 1:
        means = torch.stack([grp.double().mean(0) - mu for grp in groups])
        q, _ = torch.linalg.qr(means.t())
        w = w - (w @ q) @ q.t()
    out = fc @ w.t()
    w = w * (out_std / out.std().clamp_min(1e-9))
    lin.weight.copy_(w.reshape(shape).float())
    lin.bias.copy_((-(mu @ w.t())).float())


def calibrate_classifier_(lin, per_image, active, bg, out_std, g, candidates=4000):
    """Class logits: the background logit is a constant (its bias, set later); the active classes get
    the random directions, out of `candidates` drawn in the whitened feature space (centred, orthogonal
    to the differences between the images' means), whose per-image std is the most even across the
    images, scaled to std out_std; the other classes are the same with a bias of -12 (never fire)."""
    import torch

    f = torch.cat(per_image).double()
    mu = f.mean(0)
    fc = f - mu
    cov = fc.t() @ fc / fc.shape[0]
    cov = cov + 1e-3 * cov.diagonal().mean() * torch.eye(cov.shape[0], dtype=cov.dtype)
    evals, evecs = torch.linalg.eigh(cov)
    wh = evecs @ torch.diag(evals.rsqrt()) @ evecs.t()
    means = torch.stack([grp.double().mean(0) - mu for grp in per_image])
    q, _ = torch.linalg.qr(means.t())
    cand = torch.randn(candidates, f.shape[1], generator=g, dtype=torch.float64) @ wh
    cand = cand - (cand @ q) @ q.t()
    # evenness of a direction: how evenly its upper tail (> 2 std, where detections come from) is
    # shared among the images
    sd = (fc @ cand.t()).std(0)
    tails = torch.stack([(((grp.double() - mu) @ cand.t()) > 2 * sd).double().mean(0) for grp in per_image])
    evenness = tails.min(0).values / tails.max(0).values.clamp_min(1e-9)
    ranked = torch.argsort(evenness, descending=True)
    pool = ranked[:200]
    ncls = lin.weight.shape[0]
    rows = [c for c in range(ncls) if c != bg]
    inactive = [c for c in rows if c not in active]
    fcs = [grp.double() - mu for grp in per_image]

    def build(sel):
        w = torch.zeros(ncls, f.shape[1], dtype=torch.float64)
        for k, c in enumerate(list(active) + inactive):
            v = cand[sel[k]]
            w[c] = v * (out_std / (fc @ v).std())
        b = -(mu @ w.t())
        b[inactive] -= 12.0
        b[bg] = 0.0
        return w, b

    # several draws of the active classes' directions out of the most even ones; keep the draw whose
    # share of RoIs scoring > 0.05 is the most even across the images (a cheap proxy of the counts)
    best_draw, best_score = None, -1.0
    for _ in range(40):
        sel = torch.cat(
            [pool[torch.randperm(len(pool), generator=g)[: len(active)]], ranked[200 : 200 + len(inactive)]]
        )
        w, b = build(sel)
        score = 0.0
        for shift in np.arange(6.0, 16.01, 0.5):
            bb = b.clone()
            bb[bg] += float(shift)
            fr = []
            for x in fcs:
                p = torch.softmax((x + mu) @ w.t() + bb, dim=1)
                p[:, bg] = 0
                fr.append(float((p.max(1).values > 0.05).double().mean()))
            if max(fr) <= 0.2:
                score = max(score, min(fr) / max(max(fr), 1e-9) * (min(fr) > 0.002))
        if score > best_score:
            best_draw, best_score = sel, score
    w, b = build(best_draw)
    lin.weight.copy_(w.float())
    lin.bias.copy_(b.float())
    return best_score


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def rle(mask):
    from pycocotools import mask as mask_util

    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")}


def write_json_gz(path, obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        # mtime=0: byte-identical output on regeneration
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=9) as z:
            z.write(data)


def yaml_with_overrides(src_text, overrides, tuple_style="paren"):
    """The source YAML text with the narrowing overrides written into it, as a user edits the file:
    the original lines, comments and formatting kept; each override replaces its key's line or is
    added at the end of its section. tuple_style "paren" writes (a, b) like maskrcnn-benchmark's
    YAMLs (yacs literal_evals the string), "list" writes [a, b]."""

    def fmt(v):
        if isinstance(v, (tuple, list)):
            inner = ", ".join(str(x) for x in v)
            return f"({inner})" if tuple_style == "paren" else f"[{inner}]"
        if isinstance(v, bool):
            return "True" if v else "False"
        return str(v)

    lines = src_text.rstrip("\n").split("\n")

    def indent_of(line):
        return len(line) - len(line.lstrip(" "))

    def significant(line):
        t = line.strip()
        return bool(t) and not t.startswith("#")

    def block_end(i, ind):
        j = i + 1
        while j < len(lines) and (not significant(lines[j]) or indent_of(lines[j]) > ind):
            j += 1
        while j > i + 1 and not significant(lines[j - 1]):  # keep trailing blank lines outside
            j -= 1
        return j

    for key, value in overrides.items():
        parts = key.split(".")
        start, end, ind = 0, len(lines), 0
        for depth, name in enumerate(parts):
            found = None
            for i in range(start, end):
                if (
                    significant(lines[i])
                    and indent_of(lines[i]) == ind
                    and lines[i].strip().split(":")[0] == name
                ):
                    found = i
                    break
            last = depth == len(parts) - 1
            if found is None:
                text = " " * ind + name + ":" + (" " + fmt(value) if last else "")
                lines.insert(end, text)
                found = end
            elif last:
                lines[found] = " " * ind + name + ": " + fmt(value)
            if not last:
                start, end, ind = found + 1, block_end(found, ind), ind + 2
    return "\n".join(lines) + "\n"


class ForwardCapture:
    def __init__(self, module, pre=False):
        self.values = []
        if pre:
            self.h = module.register_forward_pre_hook(
                lambda m, inp: self.values.append(inp[0].detach().clone())
            )
        else:
            self.h = module.register_forward_hook(
                lambda m, inp, out: self.values.append(out.detach().clone())
            )

    def cat(self):
        import torch

        return torch.cat(self.values) if self.values else None

    def remove(self):
        self.h.remove()


# ----------------------------------------------------------------------------------------------
# maskrcnn-benchmark
# ----------------------------------------------------------------------------------------------
class Mrb:
    source = "maskrcnn-benchmark"

    def __init__(self, src):
        sys.path.insert(0, src)
        import foreign_shims

        foreign_shims.install_mrb_shims()
        import maskrcnn_benchmark.modeling.detector  # noqa: F401
        import torch
        from maskrcnn_benchmark.config import cfg

        foreign_shims.patch_mrb_after_import()
        self.torch = torch
        self.base_cfg = cfg
        self.src = src

    def narrow(self, cfg_rel):
        o = dict(MRB_NARROW)
        if "mask" in cfg_rel:
            o.update(MRB_NARROW_MASK)
        if "keypoint" in cfg_rel:
            o.update(MRB_NARROW_KP)
        return o

    def build_model(self, cfg):
        from maskrcnn_benchmark.modeling.detector import build_detection_model

        c = cfg.clone()
        c.defrost()
        c.MODEL.DEVICE = "cpu"
        c.freeze()
        m = build_detection_model(c)
        m.eval()
        return m, c

    def predictor(self, cfg, model):
        """COCODemo.compute_prediction without the drawing, with the dataset transforms."""
        from maskrcnn_benchmark.data.transforms import build_transforms
        from maskrcnn_benchmark.modeling.roi_heads.mask_head.inference import Masker
        from maskrcnn_benchmark.structures.bounding_box import BoxList
        from maskrcnn_benchmark.structures.image_list import to_image_list
        from PIL import Image

        torch = self.torch
        transforms = build_transforms(cfg, is_train=False)
        masker = Masker(threshold=0.5, padding=1)

        def run(bgr):
            h, w = bgr.shape[:2]
            pil = Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))  # RGB, like the datasets
            dummy = BoxList(torch.zeros((1, 4)), (w, h), mode="xyxy")  # Compose needs a target
            image, _ = transforms(pil, dummy)
            image_list = to_image_list(image, cfg.DATALOADER.SIZE_DIVISIBILITY)
            with torch.no_grad():
                pred = model(image_list)[0]
            pred = pred.resize((w, h))
            info = {"input_hw": list(image.shape[-2:]), "padded_hw": list(image_list.tensors.shape[-2:])}
            if pred.has_field("mask"):
                pred.add_field("mask", masker([pred.get_field("mask")], [pred])[0])
            return pred, info, image

        return run

    def coco_demo(self, cfg, weights):
        """demo/predictor.py's COCODemo, unmodified, loading `weights` with DetectronCheckpointer."""
        sys.path.insert(0, os.path.join(self.src, "demo"))
        from predictor import COCODemo

        c = cfg.clone()
        c.defrost()
        c.MODEL.DEVICE = "cpu"
        c.MODEL.WEIGHT = weights
        c.freeze()
        return COCODemo(c, confidence_threshold=0.0)

    def heads(self, model):
        rh = model.roi_heads
        d = {
            "fc7": rh.box.feature_extractor.fc7,
            "cls_score": rh.box.predictor.cls_score,
            "bbox_pred": rh.box.predictor.bbox_pred,
            "rpn_bbox": model.rpn.head.bbox_pred,
            "rpn_obj": model.rpn.head.cls_logits,
            "bg_index": 0,
            "num_classes": rh.box.predictor.cls_score.out_features,
        }
        if hasattr(rh, "mask"):
            fx = rh.mask.feature_extractor
            d["mask_convs"] = [getattr(fx, "mask_fcn%d" % i) for i in (1, 2, 3, 4)]
            d["mask_deconv"] = rh.mask.predictor.conv5_mask
            d["mask_logits"] = rh.mask.predictor.mask_fcn_logits
        if hasattr(rh, "keypoint"):
            fx = rh.keypoint.feature_extractor
            d["kp_convs"] = [getattr(fx, n) for n in fx.blocks]
            d["kp_deconv"] = rh.keypoint.predictor.kps_score_lowres
        return d

    def count(self, pred):
        return len(pred)

    def mask_input_hook(self, model):
        return ForwardCapture(model.roi_heads.mask.predictor.mask_fcn_logits, pre=True)

    def kp_hook(self, model):
        return ForwardCapture(model.roi_heads.keypoint.predictor.kps_score_lowres)

    def save(self, cfg, model, out_dir, ddp):
        """What tools/train_net.py leaves: model_final.pth (DetectronCheckpointer) + config.yml."""
        from maskrcnn_benchmark.solver import make_lr_scheduler, make_optimizer
        from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer
        from maskrcnn_benchmark.utils.miscellaneous import save_config

        torch = self.torch
        wrapped = model
        if ddp:

            class DistributedDataParallel(torch.nn.Module):  # what DDP's state_dict looks like
                def __init__(self, module):
                    super().__init__()
                    self.module = module

            wrapped = DistributedDataParallel(model)
        optimizer = make_optimizer(cfg, wrapped)
        scheduler = make_lr_scheduler(cfg, optimizer)
        tmp = tempfile.mkdtemp(dir=out_dir)
        ck = DetectronCheckpointer(cfg, wrapped, optimizer, scheduler, tmp, save_to_disk=True)
        ck.save("model_final", iteration=cfg.SOLVER.MAX_ITER)
        shutil.move(os.path.join(tmp, "model_final.pth"), os.path.join(out_dir, "model_final.pth"))
        shutil.rmtree(tmp)
        save_config(cfg, os.path.join(out_dir, "config.yml"))

    def load_fresh(self, cfg, path):
        from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer

        model, c = self.build_model(cfg)
        ck = DetectronCheckpointer(c, model, save_dir="")
        ck.load(path)
        model.eval()
        return model, c

    def record(self, pred):
        boxes = pred.bbox.numpy().astype(np.float64)
        r = {
            "boxes": boxes.tolist(),
            "scores": pred.get_field("scores").numpy().astype(np.float64).tolist(),
            "labels": pred.get_field("labels").numpy().astype(int).tolist(),
        }
        if pred.has_field("mask"):
            masks = pred.get_field("mask").numpy()[:, 0] > 0
            r["masks"] = [rle(m) for m in masks]
            r["mask_areas"] = [int(m.sum()) for m in masks]
        if pred.has_field("keypoints"):
            kp = pred.get_field("keypoints")
            r["keypoints"] = kp.keypoints.numpy().astype(np.float64).tolist()
            r["keypoint_logits"] = kp.get_field("logits").numpy().astype(np.float64).tolist()
        return r


# ----------------------------------------------------------------------------------------------
# detectron2
# ----------------------------------------------------------------------------------------------
class D2:
    source = "detectron2"

    def __init__(self, src):
        sys.path.insert(0, src)
        import foreign_shims

        foreign_shims.install_d2_shims()
        import torch
        from detectron2.config import get_cfg

        self.torch = torch
        self.get_cfg = get_cfg
        self.src = src

    def narrow(self, cfg_rel):
        o = dict(D2_NARROW)
        if "InstanceSegmentation" in cfg_rel:
            o.update(D2_NARROW_MASK)
        return o

    def build_model(self, cfg):
        from detectron2.modeling import build_model

        c = cfg.clone()
        c.defrost()
        c.MODEL.DEVICE = "cpu"
        c.freeze()
        m = build_model(c)
        m.eval()
        return m, c

    def predictor(self, cfg, model):
        """DefaultPredictor.__call__ on our model object (same transforms and model call)."""
        from detectron2.engine import DefaultPredictor

        p = DefaultPredictor.__new__(DefaultPredictor)
        p.cfg = cfg.clone()
        p.model = model
        import detectron2.data.transforms as T

        p.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        p.input_format = cfg.INPUT.FORMAT
        cap = {}

        def pre_hook(m, args):
            cap["input_hw"] = list(args[0][0]["image"].shape[-2:])

        def run(bgr):
            h = model.register_forward_pre_hook(pre_hook)
            try:
                out = p(bgr)["instances"]
            finally:
                h.remove()
            return out, {"input_hw": cap["input_hw"]}, None

        return run

    def real_predictor(self, cfg):
        """The unmodified DefaultPredictor, loading cfg.MODEL.WEIGHTS with its own checkpointer."""
        from detectron2.engine import DefaultPredictor

        p = DefaultPredictor(cfg)
        cap = {}

        def pre_hook(m, args):
            cap["input_hw"] = list(args[0][0]["image"].shape[-2:])

        def backbone_hook(m, args):
            cap["padded_hw"] = list(args[0].shape[-2:])

        def run(bgr):
            h = p.model.register_forward_pre_hook(pre_hook)
            hb = p.model.backbone.register_forward_pre_hook(backbone_hook)
            try:
                out = p(bgr)["instances"]
            finally:
                h.remove()
                hb.remove()
            return out, {"input_hw": cap["input_hw"], "padded_hw": cap["padded_hw"]}, None

        return run, p

    def heads(self, model):
        rh = model.roi_heads
        d = {
            "fc7": rh.box_head.fc2,
            "cls_score": rh.box_predictor.cls_score,
            "bbox_pred": rh.box_predictor.bbox_pred,
            "rpn_bbox": model.proposal_generator.rpn_head.anchor_deltas,
            "rpn_obj": model.proposal_generator.rpn_head.objectness_logits,
            "bg_index": rh.box_predictor.cls_score.out_features - 1,
            "num_classes": rh.box_predictor.cls_score.out_features,
        }
        if getattr(rh, "mask_on", False):
            mh = rh.mask_head
            d["mask_convs"] = [getattr(mh, "mask_fcn%d" % i) for i in (1, 2, 3, 4)]
            d["mask_deconv"] = mh.deconv
            d["mask_logits"] = mh.predictor
        return d

    def count(self, pred):
        return len(pred)

    def mask_input_hook(self, model):
        return ForwardCapture(model.roi_heads.mask_head.predictor, pre=True)

    def save(self, cfg, model, out_dir, ddp):
        """What a detectron2 training run leaves: model_final.pth (DetectionCheckpointer with the
        optimizer and scheduler the trainer registers) + config.yaml (default_setup's cfg.dump())."""
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.solver import build_lr_scheduler, build_optimizer

        optimizer = build_optimizer(cfg, model)
        scheduler = build_lr_scheduler(cfg, optimizer)
        tmp = tempfile.mkdtemp(dir=out_dir)
        ck = DetectionCheckpointer(model, tmp, optimizer=optimizer, scheduler=scheduler)
        ck.save("model_final", iteration=cfg.SOLVER.MAX_ITER - 1)
        shutil.move(os.path.join(tmp, "model_final.pth"), os.path.join(out_dir, "model_final.pth"))
        shutil.rmtree(tmp)
        with open(os.path.join(out_dir, "config.yaml"), "w") as f:
            f.write(cfg.dump())

    def save_pkl(self, model, path):
        """Model-zoo layout: {"model": {name: ndarray}, "__author__", "matching_heuristics"}, as
        DetectionCheckpointer._load_file reads a .pkl (pickle.load(encoding="latin1")). Protocol 3,
        ndarray globals spelled numpy.core.multiarray like files written with numpy 1.x."""
        sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        obj = {
            "model": sd,
            "__author__": "maskrcnn-deploy tests (detectron2 model-zoo layout)",
            "matching_heuristics": True,
        }
        data = pickle.dumps(obj, protocol=3)
        data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        with open(path, "wb") as f:
            f.write(data)

    def record(self, inst):
        r = {
            "boxes": inst.pred_boxes.tensor.numpy().astype(np.float64).tolist(),
            "scores": inst.scores.numpy().astype(np.float64).tolist(),
            "labels": inst.pred_classes.numpy().astype(int).tolist(),
        }
        if inst.has("pred_masks"):
            masks = inst.pred_masks.numpy().astype(bool)
            r["masks"] = [rle(m) for m in masks]
            r["mask_areas"] = [int(m.sum()) for m in masks]
        return r


# ----------------------------------------------------------------------------------------------
# the model pipeline
# ----------------------------------------------------------------------------------------------
def make_fire(src, model, cfg, seed, images, log, target=(25, 60)):
    """Random weights that give detections (see README, "How the random weights fire").
    Calibrated on the features the model computes on all the test images. Deterministic."""
    torch = src.torch
    g = torch.Generator().manual_seed(seed + 7)
    h = src.heads(model)
    run = src.predictor(cfg, model)
    imgs = [bgr for _, bgr in images]

    def run_all():
        return [run(bgr)[0] for bgr in imgs]

    with torch.no_grad():
        nbn = perturb_frozen_bn(model, g)
        scales = unit_rms_frozen_bn_(model, run, dict(images)[CALIBRATION_IMAGE])
        log(
            "FrozenBatchNorm outputs rescaled to rms 1: %d layers, rms before %.3g..%.3g"
            % (len(scales), min(scales), max(scales))
        )
        # no detections while calibrating the RPN and the box head
        h["cls_score"].weight.zero_()
        h["cls_score"].bias.zero_()
        # RPN: objectness logits with std 2, box deltas with std 0.15, on the observed RPN features
        cap = ForwardCapture(h["rpn_bbox"], pre=True)
        run_all()
        cap.remove()
        rpn_feats = torch.cat([v.permute(0, 2, 3, 1).reshape(-1, v.shape[1]) for v in cap.values])
        calibrate_linear_(h["rpn_bbox"], rpn_feats, 0.15, g)
        calibrate_linear_(h["rpn_obj"], rpn_feats, 2.0, g)
        # box head: class logits std 2.5 and box deltas std 1 (x0.1/0.2 after the coder weights)
        cap = ForwardCapture(h["fc7"])
        run_all()
        cap.remove()
        feats = torch.relu(cap.cat())
        per_image = [torch.relu(v) for v in cap.values]
        log(
            f"box-head features on the test images: {tuple(feats.shape)}, rms {feats.pow(2).mean().sqrt():.4f}"
        )
        calibrate_linear_(h["bbox_pred"], feats, 1.0, g)
        ncls = h["num_classes"]
        bg = h["bg_index"]
        fg = [c for c in range(ncls) if c != bg]
        perm = torch.randperm(len(fg), generator=g)[:12]
        active = sorted(fg[int(i)] for i in perm)
        even = calibrate_classifier_(h["cls_score"], per_image, active, bg, 2.5, g)
        log(f"class directions: most even draw, share of RoIs > 0.05 min/max across images {even:.2f}")
        for name_i, f_i in zip([n for n, _ in images], per_image):
            lg = (f_i @ h["cls_score"].weight.t() + h["cls_score"].bias)[:, active]
            log(f"  {name_i}: active class-logit mean {lg.mean():.2f} std {lg.std(0).mean():.2f}")
        bias = h["cls_score"].bias.clone()
        # background logit: scanned so that every image gets as many detections as possible while
        # none reaches the top-100 cut (where near-ties decide what is kept)
        best = None
        for mid in np.arange(7.0, 16.01, 0.5):
            b = bias.clone()
            b[bg] += float(mid)
            h["cls_score"].bias.copy_(b)
            counts = [src.count(p) for p in run_all()]
            log(f"  background bias {mid:+.2f} -> detections {counts}")
            if max(counts) <= 90 and (best is None or min(counts) > min(best[1])):
                best = (float(mid), counts)
            if max(counts) < 10:
                break
        chosen, counts = best
        b = bias.clone()
        b[bg] += round(chosen, 3)
        h["cls_score"].bias.copy_(b)
        for key in ("mask", "kp"):
            if key + "_convs" not in h:
                continue
            convs = h[key + "_convs"]
            # first conv: a constant positive response plus a small RoI-dependent part, so that the
            # zero-padded blurs after it make a dome of about the same shape in every RoI
            cap = ForwardCapture(convs[0])
            run_all()
            cap.remove()
            pre = cap.cat()
            convs[0].weight.mul_(0.08 / pre.std().clamp_min(1e-6))
            convs[0].bias.fill_(1.0)
        if "mask_convs" in h:
            for conv in h["mask_convs"][1:]:
                blur_conv_(conv, g)
            dc = h["mask_deconv"]
            dc.weight.copy_((0.5 + torch.rand(dc.weight.shape, generator=g)) / dc.weight.shape[0])
            dc.bias.zero_()
            cap = src.mask_input_hook(model)
            run_all()
            cap.remove()
            x = cap.cat()  # N, C, 28, 28
            ml = h["mask_logits"]
            c = ml.weight.shape[1]
            w = (1.0 + 0.3 * torch.randn(ml.weight.shape[0], c, generator=g)) / c
            resp = torch.einsum("kc,nchw->nkhw", w, x)
            med = resp.flatten(2).median(dim=2).values.median(dim=0).values  # per class
            spread = resp.flatten(2).std(dim=2).median(dim=0).values.clamp_min(1e-6)
            gain = 4.0 / spread
            ml.weight.copy_((w * gain[:, None])[:, :, None, None])
            ml.bias.copy_(-gain * med)
            log("mask logits: gain %.1f..%.1f on %d RoIs" % (gain.min(), gain.max(), x.shape[0]))
        if "kp_convs" in h:
            kd = h["kp_deconv"]
            nk = kd.weight.shape[1]
            cin = h["kp_convs"][0].weight.shape[0]
            groups = torch.arange(cin) % nk
            dirs = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1), (0, 0)]
            skew = [dirs[int(gr) % len(dirs)] for gr in groups]
            for conv in h["kp_convs"][1:]:
                blur_conv_(conv, g, skew=skew, groups=groups)
            w = torch.zeros(kd.weight.shape)
            k4 = torch.tensor([0.25, 0.75, 0.75, 0.25])
            k4 = k4[:, None] * k4[None, :]
            for i in range(cin):
                w[i, int(groups[i])] = k4
            kd.weight.copy_(w)
            kd.bias.zero_()
            cap = src.kp_hook(model)
            run_all()
            cap.remove()
            x = cap.cat()  # N, K, 28, 28
            spread = x.flatten(2).std(dim=2).median(dim=0).values.clamp_min(1e-6)
            med = x.flatten(2).median(dim=2).values.median(dim=0).values
            gain = 4.0 / spread
            kd.weight.mul_(gain[None, :, None, None])
            kd.bias.copy_(-gain * med)
            log(f"keypoint heatmaps: gain {gain.min():.1f}..{gain.max():.1f}")
    return {
        "frozen_bn_modules": nbn,
        "active_classes": active,
        "background_bias": round(chosen, 3),
        "calibration_counts": counts,
    }


def run_model(model_id, mrb_src, d2_src, log_lines, seed=None):
    import torch

    torch.set_num_threads(1)
    kind, cfg_rel, default_seed = MODELS[model_id]
    seed = default_seed if seed is None else seed
    out_dir = os.path.join(HERE, model_id)
    os.makedirs(out_dir, exist_ok=True)

    def log(s):
        print(s, flush=True)
        log_lines.append(s)

    images = load_images()
    torch.manual_seed(seed)
    np.random.seed(seed)
    if kind == "mrb":
        src = Mrb(mrb_src)
        overrides = src.narrow(cfg_rel)
        with open(os.path.join(mrb_src, cfg_rel)) as f:
            user_yaml = yaml_with_overrides(f.read(), overrides, "paren")
        yaml_name = os.path.basename(cfg_rel)
        with open(os.path.join(out_dir, yaml_name), "w") as f:
            f.write(user_yaml)
        cfg = src.base_cfg.clone()
        cfg.merge_from_file(os.path.join(out_dir, yaml_name))
        check = src.base_cfg.clone()
        check.merge_from_file(os.path.join(mrb_src, cfg_rel))
        check.merge_from_list([x for kv in overrides.items() for x in kv])
    else:
        src = D2(d2_src)
        overrides = src.narrow(cfg_rel)
        # the user's YAML keeps _BASE_: d2_configs/<group>/<file>.yaml beside d2_configs/Base-RCNN-FPN.yaml
        cdir = os.path.join(HERE, "d2_configs")
        group = os.path.basename(os.path.dirname(cfg_rel))
        os.makedirs(os.path.join(cdir, group), exist_ok=True)
        base_src = os.path.join(d2_src, "configs", "Base-RCNN-FPN.yaml")
        shutil.copyfile(base_src, os.path.join(cdir, "Base-RCNN-FPN.yaml"))
        with open(os.path.join(d2_src, cfg_rel)) as f:
            user_yaml = yaml_with_overrides(f.read(), overrides, "list")
        user_path = os.path.join(cdir, group, os.path.basename(cfg_rel))
        with open(user_path, "w") as f:
            f.write(user_yaml)
        cfg = src.get_cfg()
        cfg.merge_from_file(user_path)
        check = src.get_cfg()
        check.merge_from_file(os.path.join(d2_src, cfg_rel))
        check.merge_from_list([x for kv in overrides.items() for x in kv])
    assert cfg == check, "the written YAML does not give the source YAML + overrides"
    cfg.freeze()

    torch.manual_seed(seed)
    model, run_cfg = src.build_model(cfg)
    fire = make_fire(src, model, run_cfg, seed, images, log)
    src.save(cfg, model, out_dir, ddp=model_id in DDP_PREFIXED)
    ck_path = os.path.join(out_dir, "model_final.pth")
    log("saved %s (%d bytes)" % (ck_path, os.path.getsize(ck_path)))

    # reference detections, from the saved file, loaded by the source's own checkpointer
    if kind == "mrb":
        model2, c2 = src.load_fresh(cfg, ck_path)
        run = src.predictor(c2, model2)
        coco_demo = src.coco_demo(cfg, ck_path)
    else:
        c2 = cfg.clone()
        c2.defrost()
        c2.MODEL.WEIGHTS = ck_path
        c2.MODEL.DEVICE = "cpu"
        c2.freeze()
        run, p = src.real_predictor(c2)
        model2 = p.model
    sd_ref = model.state_dict()
    sd2 = model2.state_dict()
    assert set(sd_ref) == set(sd2), "state dict key mismatch after reload"
    assert all(torch.equal(sd_ref[k], sd2[k]) for k in sd_ref), "reloaded weights differ"

    if model_id == "d2_mask_rcnn_R_50_FPN_1x":
        pkl = os.path.join(out_dir, "model_final.pkl")
        src.save_pkl(model, pkl)
        from detectron2.checkpoint import DetectionCheckpointer

        m3, _ = src.build_model(cfg)
        DetectionCheckpointer(m3).load(pkl)
        sd3 = m3.state_dict()
        assert all(torch.equal(sd_ref[k], sd3[k]) for k in sd_ref), ".pkl reload differs"
        log(
            "saved %s (%d bytes), reloads identically through DetectionCheckpointer"
            % (pkl, os.path.getsize(pkl))
        )

    refs = {
        "model": model_id,
        "source": src.source,
        "config": cfg_rel,
        "class_convention": (
            "contiguous 1..%d, background 0 (%d logits)"
            % (run_cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES - 1, run_cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES)
            if kind == "mrb"
            else "0-based 0..%d, background = last logit" % (run_cfg.MODEL.ROI_HEADS.NUM_CLASSES - 1)
        ),
        "boxes": "x1,y1,x2,y2 in original image pixels, as the source returns them",
        "masks": "pycocotools RLE of the pasted full-image binary mask (source's own threshold)",
        "images_decoded_with": "cv2.imread(path, cv2.IMREAD_COLOR) (BGR uint8)",
        "fire": fire,
        "images": {},
    }
    with torch.no_grad():
        for name, bgr in images:
            pred, info, _ = run(bgr)
            r = src.record(pred)
            if kind == "mrb":
                # cross-check: the demo's own COCODemo.compute_prediction gives the same result
                r_demo = src.record(coco_demo.compute_prediction(bgr))
                assert r_demo == r, "COCODemo.compute_prediction differs on " + name
            r.update(info)
            r["orig_hw"] = list(bgr.shape[:2])
            refs["images"][name] = r
            labels = r["labels"]
            msg = "%s: orig %s input %s -> %d detections, %d classes, scores %.3f..%.3f" % (
                name,
                r["orig_hw"],
                r["input_hw"],
                len(labels),
                len(set(labels)),
                min(r["scores"]) if labels else 0,
                max(r["scores"]) if labels else 0,
            )
            if "mask_areas" in r and labels:
                a = np.array(r["mask_areas"])
                bx = np.array(r["boxes"])
                barea = np.maximum(bx[:, 2] - bx[:, 0], 0) * np.maximum(bx[:, 3] - bx[:, 1], 0)
                msg += ", mask px min/median %d/%d (>=64: %d), mask/box area median %.2f" % (
                    a.min(),
                    np.median(a),
                    (a >= 64).sum(),
                    np.median(a / np.maximum(barea, 1)),
                )
            if labels:
                bx = np.array(r["boxes"])
                wh = bx[:, 2:] - bx[:, :2]
                msg += f", box w {wh[:, 0].min():.0f}..{wh[:, 0].max():.0f} h {wh[:, 1].min():.0f}..{wh[:, 1].max():.0f}"
            log(msg)
    write_json_gz(os.path.join(out_dir, "reference_detections.json.gz"), refs)
    return refs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("images")
    a.add_argument("--skimage-data", required=True, help="skimage/data from the scikit-image wheel")
    b = sub.add_parser("model")
    b.add_argument("model_id", choices=sorted(MODELS))
    b.add_argument("--mrb-src", required=True)
    b.add_argument("--d2-src", required=True)
    b.add_argument("--seed", type=int, default=None, help="override the model's seed (exploration)")
    args = ap.parse_args()
    if args.cmd == "images":
        make_images(args.skimage_data)
    else:
        lines = []
        run_model(args.model_id, args.mrb_src, args.d2_src, lines, seed=args.seed)
        with open(os.path.join(HERE, args.model_id, "generation.log"), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
