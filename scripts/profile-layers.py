#!/usr/bin/env python3
"""Per-layer profile of the fp32 training step (issue 15, part 2): which convolutions run at what
share of the measured matmul rate, forward and backward, and what share of the step is not
convolution at all.

It profiles scripts/torch-step.py's PyTorch-eager step (our own network from the model yaml, SPEC's
loss, SGD), not yolo5's native step: both call the same LibTorch 1.13 convolutions (oneDNN on
this CPU), so the convolution rows say what the kernels achieve at each layer's shapes; the rest
of the step (BatchNorm, SiLU, the loss, the optimizer) differs in yolo5 (fused BatchNorm + SiLU,
no autograd for a frozen prefix). Run with the Python that has torch (Debian: python3-torch):

  /usr/bin/python3 scripts/profile-layers.py [--cfg models/yolov5n.yaml] [--img 256] [--batch 16]
      [--freeze 0] [--threads 2] [--steps 3] [--channels-last 0|1] [--out FILE.json]
"""
import argparse
import importlib.util
import json
import os
import time

import torch
import torch.nn as nn
import yaml
from torch.profiler import ProfilerActivity, profile

from step_baseline import synthetic_batch


def load_step_module():
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("torch_step", os.path.join(here, "torch-step.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def matmul_gflops(n=2048, reps=4, rounds=3):
    """The yardstick: fp32 matrix multiply at the set thread count (GFLOP/s), best of 3 rounds."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def conv_layers(model, x):
    """name → (input shape, weight shape, output shape, groups) of every Conv2d, from one forward."""
    found, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            def hook(mod, inp, out, name=name):
                found[name] = (tuple(inp[0].shape), tuple(mod.weight.shape), tuple(out.shape), mod.groups)
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return found


def step(mod, model, params, opt, x, targets, o):
    preds = model(x)
    loss = mod.loss_of(preds, targets, model.anchors, o.nc, o.img, o.batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 10.0)
    opt.step()
    opt.zero_grad()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfg", default="models/yolov5n.yaml")
    for name, value in [("img", 256), ("batch", 16), ("freeze", 0), ("threads", 2), ("steps", 3),
                        ("nc", 80), ("channels-last", 0)]:
        ap.add_argument(f"--{name}", type=int, default=value)
    ap.add_argument("--out")
    o = ap.parse_args()
    torch.set_num_threads(o.threads)
    mod = load_step_module()
    torch.manual_seed(0)
    model = mod.Model(yaml.safe_load(open(o.cfg)), o.nc).train()
    for i, layer in enumerate(model.layers):
        for q in layer.parameters():
            q.requires_grad_(i >= o.freeze)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.937, nesterov=True)
    fmt = torch.channels_last if o.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x, targets = synthetic_batch(o.batch, o.img, o.nc)
    x = x.contiguous(memory_format=fmt)
    yard = matmul_gflops()
    layers = conv_layers(model, x)
    for _ in range(2):  # warm-up: oneDNN creates its primitives on first use
        step(mod, model, params, opt, x, targets, o)
    t0 = time.perf_counter()
    for _ in range(o.steps):
        step(mod, model, params, opt, x, targets, o)
    plain_ms = 1000 * (time.perf_counter() - t0) / o.steps
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t0 = time.perf_counter()
        for _ in range(o.steps):
            step(mod, model, params, opt, x, targets, o)
        step_ms = 1000 * (time.perf_counter() - t0) / o.steps
    fwd, bwd = {}, {}
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key == "aten::convolution" and e.input_shapes:
            fwd[(tuple(e.input_shapes[0]), tuple(e.input_shapes[1]))] = e.cpu_time_total / 1000 / o.steps
        elif e.key == "aten::convolution_backward" and e.input_shapes:
            bwd[(tuple(e.input_shapes[1]), tuple(e.input_shapes[2]))] = e.cpu_time_total / 1000 / o.steps
    # Layers of the same shapes fall into one profiler row: each gets the mean.
    same = {}
    for inp, w, _, _ in layers.values():
        same[(inp, w)] = same.get((inp, w), 0) + 1
    rows = []
    for name, (inp, w, out, groups) in layers.items():
        flops = 2 * out[0] * out[1] * out[2] * out[3] * (w[1] * w[2] * w[3])
        k = same[(inp, w)]
        f_ms = fwd[(inp, w)] / k if (inp, w) in fwd else None
        b_ms = bwd[(inp, w)] / k if (inp, w) in bwd else None
        # Backward: the weight gradient, plus the input gradient except for the stem (an image).
        b_flops = flops * (1 if name.startswith("layers.0.") else 2)
        rows.append({
            "layer": name, "input": inp, "weight": w, "gflop": flops / 1e9,
            "forwardMs": f_ms, "backwardMs": b_ms,
            "forwardShare": None if not f_ms else flops / (f_ms / 1000) / 1e9 / yard,
            "backwardShare": None if not b_ms else b_flops / (b_ms / 1000) / 1e9 / yard,
        })
    conv_f, conv_b = sum(fwd.values()), sum(bwd.values())
    # Where the rest goes: the operators with the most time of their own (children excluded).
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
    ops = [{"op": e.key, "selfMs": e.self_cpu_time_total / 1000 / o.steps, "calls": e.count // o.steps}
           for e in top]
    result = {"torch": torch.__version__, "cfg": o.cfg, "img": o.img, "batch": o.batch,
              "freeze": o.freeze, "threads": o.threads, "channelsLast": bool(o.channels_last),
              "matmulGflops": yard, "stepMs": plain_ms, "profiledStepMs": step_ms, "convForwardMs": conv_f,
              "convBackwardMs": conv_b, "topOps": ops, "layers": rows}
    print(f"step {plain_ms:.0f} ms ({step_ms:.0f} ms under the profiler); convolutions: forward {conv_f:.0f} ms, backward {conv_b:.0f} ms "
          f"({100 * (conv_f + conv_b) / plain_ms:.0f}% of the unprofiled step); matmul yardstick {yard:.0f} GFLOP/s")
    print("(layers of equal shapes share a profiler row: each shows the mean)")
    print("| layer | input | weight | GFLOP | fwd ms | fwd % of matmul | bwd ms | bwd % of matmul |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    pct = lambda v: "—" if v is None else f"{100 * v:.0f}%"
    num = lambda v: "—" if v is None else f"{v:.1f}"
    for r in rows:
        print(f"| {r['layer']} | {'×'.join(map(str, r['input']))} | {'×'.join(map(str, r['weight']))} | "
              f"{r['gflop']:.2f} | {num(r['forwardMs'])} | {pct(r['forwardShare'])} | "
              f"{num(r['backwardMs'])} | {pct(r['backwardShare'])} |")
    print("\n| operator (self time) | ms/step | calls/step |")
    print("| --- | ---: | ---: |")
    for r in ops:
        print(f"| {r['op']} | {r['selfMs']:.1f} | {r['calls']} |")
    if o.out:
        with open(o.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
