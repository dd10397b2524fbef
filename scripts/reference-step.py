#!/usr/bin/env python3
"""The real YOLOv5 v7.0 reference's CPU training step, timed on this machine, as the Python
counterpart of scripts/torch-step.py for scripts/bench.ts: same command line, same JSON lines.

It calls the reference through its public classes and functions only and contains none of its
code: models.yolo.Model, utils.loss.ComputeLoss, utils.torch_utils.smart_optimizer and ModelEMA,
with data/hyps/hyp.scratch-low.yaml. Per freeze level it builds a fresh model and does what the
reference's train.py does around one batch on CPU: hyps scaled for nl output layers, classes and
image size; weight decay scaled by the nominal batch of 64; layers frozen by the `model.{i}.`
name prefix for i < freeze; then per step forward, loss (already times batch size), backward
through a disabled GradScaler (train.py's CPU path), clip_grad_norm_(10), SGD step, zero_grad and
the EMA update. Unlike train.py it steps the optimizer every batch (train.py accumulates
round(64 / batch) batches per step), skips the warm-up learning-rate ramp, and feeds synthetic
batches (random pixels in [0, 1], four random boxes per image), so data loading is not timed.
Two warm-up steps, then the median step. Channels-first fp32; --amp 1 wraps forward and loss in
CPU bfloat16 autocast, which the reference itself never does on CPU.

The reference is not part of this repository: pass a checkout of ultralytics/yolov5 at tag v7.0
(or a tree holding at least its models/, utils/ and data/hyps/) as --yolov5. Its imports need
numpy, PyYAML, OpenCV, pandas, Pillow, requests, IPython, matplotlib, tqdm and torchvision
(Debian: python3-opencv python3-pandas python3-matplotlib python3-tqdm python3-ipython
python3-torchvision ...). Run it with a Python that has torch, e.g. /usr/bin/python3 here.

  /usr/bin/python3 scripts/reference-step.py --yolov5 DIR [--cfg models/yolov5n.yaml] [--img 256]
      [--batch 16] [--steps 12] [--freezes 0,10,24] [--threads 2] [--nc 80] [--amp 0|1]
"""
import logging
import os
import sys
import time

import torch
import yaml

from step_baseline import report, step_parser, synthetic_batch


def main():
    ap = step_parser("the YOLOv5 reference's fp32 training step")
    ap.add_argument("--yolov5", required=True, help="reference checkout (ultralytics/yolov5 at v7.0)")
    o = ap.parse_args()
    if o.amp not in (0, 1):
        ap.error("--amp must be 0 or 1")
    torch.set_num_threads(o.threads)

    root = os.path.abspath(o.yolov5)
    sys.path.insert(0, root)
    from models.yolo import Model  # the reference's own classes from here on
    from utils.loss import ComputeLoss
    from utils.torch_utils import ModelEMA, smart_optimizer

    # Importing the reference sets OMP_NUM_THREADS to cpu_count - 1 (1 here) for what it starts
    # later; the step itself runs on the threads asked for, as torch-step.py's does.
    torch.set_num_threads(o.threads)
    logging.getLogger("yolov5").setLevel(logging.WARNING)  # keep its model summary off the output
    with open(os.path.join(root, "data", "hyps", "hyp.scratch-low.yaml")) as f:
        base_hyp = yaml.safe_load(f)

    for freeze in [int(f) for f in o.freezes.split(",")]:
        torch.manual_seed(0)
        model = Model(o.cfg, ch=3, nc=o.nc)

        prefixes = [f"model.{i}." for i in range(freeze)]  # train.py's freeze list for --freeze N
        for name, q in model.named_parameters():
            q.requires_grad = not any(p in name for p in prefixes)

        hyp = dict(base_hyp)
        nominal = 64
        accumulate = max(round(nominal / o.batch), 1)
        hyp["weight_decay"] *= o.batch * accumulate / nominal
        optimizer = smart_optimizer(model, "SGD", hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
        ema = ModelEMA(model)

        nl = model.model[-1].nl  # output layers, as train.py scales the loss gains
        hyp["box"] *= 3 / nl
        hyp["cls"] *= o.nc / 80 * 3 / nl
        hyp["obj"] *= (o.img / 640) ** 2 * 3 / nl
        hyp["label_smoothing"] = 0.0
        model.nc = o.nc
        model.hyp = hyp
        compute_loss = ComputeLoss(model)
        scaler = torch.cuda.amp.GradScaler(enabled=False)  # train.py's scaler when AMP is off (CPU)
        model.train()

        x, targets = synthetic_batch(o.batch, o.img, o.nc)

        times = []
        for step in range(o.steps + 2):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=o.amp == 1):
                pred = model(x)
                loss, _ = compute_loss(pred, targets)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad()
            ema.update(model)
            if step >= 2:  # 2 warm-up steps, as bench.ts
                times.append(time.perf_counter() - t0)
        trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
        report("yolov5-reference", freeze, o.amp, times, trainable)


if __name__ == "__main__":
    main()
