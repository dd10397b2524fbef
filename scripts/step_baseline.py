"""What the Python step baselines share (scripts/torch-step.py, scripts/reference-step.py, and
the batch for scripts/profile-layers.py): the command line bench.ts passes, the synthetic batch,
and the JSON line bench.ts reads back."""
import argparse
import json
import resource

import torch


def step_parser(description):
    """--cfg --img --batch --steps --threads --nc --amp --freezes, with bench.ts's defaults."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cfg", default="models/yolov5n.yaml")
    for name, value in [("img", 256), ("batch", 16), ("steps", 12), ("threads", 2), ("nc", 80), ("amp", 0)]:
        ap.add_argument(f"--{name}", type=int, default=value)
    ap.add_argument("--freezes", default="0,10,24")
    return ap


def synthetic_batch(batch, img, nc, per_image=4):
    """Random pixels in [0, 1] and `per_image` random boxes per image: rows [image, class, x, y,
    w, h], normalised (data loading is not what the baselines time)."""
    x = torch.rand(batch, 3, img, img)
    n = batch * per_image
    targets = torch.cat(
        [torch.arange(batch).repeat_interleave(per_image)[:, None].float(),
         torch.randint(0, nc, (n, 1)).float(),
         torch.rand(n, 2) * 0.8 + 0.1,
         torch.rand(n, 2) * 0.3 + 0.02], 1)
    return x, targets


def report(impl, freeze, amp, times, trainable):
    """One JSON line for bench.ts: the median step of `times` (seconds) and the peak RSS so far."""
    print(json.dumps({
        "impl": impl, "torch": torch.__version__, "freeze": freeze,
        "amp": "bf16" if amp == 1 else "off", "msPerStep": 1000 * sorted(times)[len(times) // 2],
        "peakRssMB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "trainable": trainable,
    }), flush=True)
