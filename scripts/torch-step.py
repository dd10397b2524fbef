#!/usr/bin/env python3
"""An independent PyTorch-eager fp32 baseline for scripts/bench.ts: the YOLOv5 training step
(forward, loss, backward, SGD step) timed in Python torch on the same machine.

Written for this project from the facts in SPEC.md and the model yaml (models/*.yaml); it is not
the reference's code and makes no claim to match its numbers, only its work per step: the same
layers, channel and repeat counts, the loss's target assignment and terms, SGD with Nesterov
momentum, freezing by layer prefix (frozen layers run their forward without autograd, as
requires_grad=False gives). Batches are synthetic (random pixels, a few boxes per image): data
loading is not timed. Prints one JSON line per freeze level.

  python3 scripts/torch-step.py [--cfg models/yolov5n.yaml] [--img 256] [--batch 16]
      [--steps 12] [--freezes 0,10,24] [--threads 2] [--nc 80] [--amp 0|1]
"""
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from step_baseline import report, step_parser, synthetic_batch


class ConvBnAct(nn.Module):
    def __init__(self, c_in, c_out, k=1, s=1, p=None):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)

    def forward(self, x):
        return F.silu(self.bn(self.conv(x)))


class Residual(nn.Module):
    def __init__(self, c, shortcut):
        super().__init__()
        self.cv1, self.cv2, self.add = ConvBnAct(c, c, 1), ConvBnAct(c, c, 3), shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class CrossStage(nn.Module):  # SPEC's C3
    def __init__(self, c_in, c_out, n, shortcut=True):
        super().__init__()
        h = c_out // 2
        self.cv1, self.cv2, self.cv3 = ConvBnAct(c_in, h), ConvBnAct(c_in, h), ConvBnAct(2 * h, c_out)
        self.m = nn.Sequential(*[Residual(h, shortcut) for _ in range(n)])

    def forward(self, x):
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


class PoolPyramid(nn.Module):  # SPEC's SPPF
    def __init__(self, c_in, c_out, k):
        super().__init__()
        h = c_in // 2
        self.cv1, self.cv2, self.k = ConvBnAct(c_in, h), ConvBnAct(4 * h, c_out), k

    def forward(self, x):
        ys = [self.cv1(x)]
        for _ in range(3):
            ys.append(F.max_pool2d(ys[-1], self.k, 1, self.k // 2))
        return self.cv2(torch.cat(ys, 1))


class Model(nn.Module):
    def __init__(self, cfg, nc):
        super().__init__()
        gd, gw = cfg["depth_multiple"], cfg["width_multiple"]
        self.na, self.no = len(cfg["anchors"][0]) // 2, nc + 5
        rows, ch, self.sources, layers = cfg["backbone"] + cfg["head"], [], [], []
        width = lambda c: math.ceil(c * gw / 8) * 8
        for src, n, kind, args in rows:
            n = max(round(n * gd), 1) if n > 1 else n
            c_in = (ch[src] if ch else 3) if isinstance(src, int) else None
            if kind == "Conv":
                c, layer = width(args[0]), ConvBnAct(c_in, width(args[0]), *args[1:])
            elif kind == "C3":
                c, layer = width(args[0]), CrossStage(c_in, width(args[0]), n, *args[1:])
            elif kind == "SPPF":
                c, layer = width(args[0]), PoolPyramid(c_in, width(args[0]), args[1])
            elif kind == "nn.Upsample":
                c, layer = c_in, nn.Upsample(scale_factor=2, mode="nearest")
            elif kind == "Concat":
                c, layer = sum(ch[s] for s in src), nn.Identity()
            elif kind == "Detect":
                c, layer = 0, nn.ModuleList(nn.Conv2d(ch[s], self.na * self.no, 1) for s in src)
            else:
                raise ValueError(kind)
            layers.append(layer)
            self.sources.append(src)
            ch.append(c)
        self.layers = nn.ModuleList(layers)
        self.anchors = torch.tensor(cfg["anchors"], dtype=torch.float32).view(len(cfg["anchors"]), -1, 2)
        self.anchors /= torch.tensor([8.0, 16.0, 32.0]).view(-1, 1, 1)  # grid units (P3-P5)

    def forward(self, x):
        outs = []
        for i, (layer, src) in enumerate(zip(self.layers, self.sources)):
            if isinstance(src, list) and isinstance(layer, nn.ModuleList):
                return [
                    m(outs[s]).view(x.shape[0], self.na, self.no, *outs[s].shape[2:]).permute(0, 1, 3, 4, 2)
                    for m, s in zip(layer, src)
                ]
            x = torch.cat([outs[s] if s != -1 else x for s in src], 1) if isinstance(src, list) else layer(outs[src] if src != -1 else x)
            outs.append(x)


def ciou(a, b, eps=1e-7):  # (n, 4) xywh boxes
    a1, a2, b1, b2 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2, b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    inter = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(0).prod(1)
    union = a[:, 2:].prod(1) + b[:, 2:].prod(1) - inter + eps
    iou = inter / union
    c2 = ((torch.max(a2, b2) - torch.min(a1, b1)) ** 2).sum(1) + eps
    rho2 = ((a[:, :2] - b[:, :2]) ** 2).sum(1)
    v = (4 / math.pi**2) * (torch.atan(b[:, 2] / (b[:, 3] + eps)) - torch.atan(a[:, 2] / (a[:, 3] + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + 1 + eps)
    return iou - (rho2 / c2 + v * alpha)


def loss_of(preds, targets, anchors, nc, imgsz, bs):
    """SPEC §2 with scratch-low gains: matched cells (5 offsets), CIoU box loss, objectness BCE
    against the detached CIoU with level balance, class BCE."""
    gains = {"box": 0.05, "cls": 0.5 * nc / 80, "obj": (imgsz / 640) ** 2}
    lbox, lobj, lcls = (torch.zeros(()) for _ in range(3))
    offsets = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32) * 0.5
    for level, p in enumerate(preds):
        ny, nx = p.shape[2:4]
        tobj = torch.zeros(p.shape[:4])
        t = targets.clone()
        t[:, 2:6] *= torch.tensor([nx, ny, nx, ny], dtype=torch.float32)
        rows = []
        for a, anchor in enumerate(anchors[level]):
            r = t[:, 4:6] / anchor
            keep = torch.max(r, 1 / r).max(1).values < 4.0
            ta = t[keep]
            xy, inv = ta[:, 2:4], torch.tensor([nx, ny]) - ta[:, 2:4]
            j, k = ((xy % 1 < 0.5) & (xy > 1)).T
            l, m = ((inv % 1 < 0.5) & (inv > 1)).T
            masks = [torch.ones_like(j), j, k, l, m]
            for o, mask in zip(offsets, masks):
                sel = ta[mask]
                cell = (sel[:, 2:4] - o).long()
                rows.append((sel, cell, a))
        for sel, cell, a in rows:
            if not len(sel):
                continue
            b, cls = sel[:, 0].long(), sel[:, 1].long()
            gx, gy = cell[:, 0].clamp(0, nx - 1), cell[:, 1].clamp(0, ny - 1)
            ps = p[b, a, gy, gx]
            pxy = ps[:, :2].sigmoid() * 2 - 0.5
            pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors[level][a]
            iou = ciou(torch.cat([pxy, pwh], 1), torch.cat([sel[:, 2:4] - cell, sel[:, 4:6]], 1))
            lbox = lbox + (1 - iou).mean()
            tobj[b, a, gy, gx] = iou.detach().clamp(0)
            tc = torch.zeros_like(ps[:, 5:])
            tc[range(len(cls)), cls] = 1
            lcls = lcls + F.binary_cross_entropy_with_logits(ps[:, 5:], tc)
        lobj = lobj + F.binary_cross_entropy_with_logits(p[..., 4], tobj) * [4.0, 1.0, 0.4][level]
    return (lbox * gains["box"] + lobj * gains["obj"] + lcls * gains["cls"]) * bs


def main():
    o = step_parser("our PyTorch-eager fp32 training step").parse_args()
    torch.set_num_threads(o.threads)
    cfg = yaml.safe_load(open(o.cfg))
    for freeze in [int(f) for f in o.freezes.split(",")]:
        torch.manual_seed(0)
        model = Model(cfg, o.nc).train()
        for i, layer in enumerate(model.layers):
            for q in layer.parameters():
                q.requires_grad_(i >= freeze)
        params = [q for q in model.parameters() if q.requires_grad]
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.937, nesterov=True)
        x, targets = synthetic_batch(o.batch, o.img, o.nc)
        times = []
        for step in range(o.steps + 2):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=o.amp == 1):
                preds = model(x)
            loss = loss_of([q.float() for q in preds], targets, model.anchors, o.nc, o.img, o.batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            opt.zero_grad()
            if step >= 2:  # 2 warm-up steps, as bench.ts
                times.append(time.perf_counter() - t0)
        report("pytorch-eager", freeze, o.amp, times, sum(q.numel() for q in params))


if __name__ == "__main__":
    main()
