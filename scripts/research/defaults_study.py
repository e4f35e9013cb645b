#!/usr/bin/env python3
"""The defaults study of docs/training.md ("The defaults, against the PyTorch bar"): trains the network on
the rows of each dataset above the bottom --val-fraction, with the trainer under several settings and with
PyTorch's plain random crops (scripts/research/pytorch_baseline.py, the bar), for several seeds, and scores
each on the held-out rows. Runs --lanes trainings at once, one thread each, and appends one JSON line per run to --log
(runs already in the log are skipped, so an interrupted study resumes). Prints a table of mean, min and
max IoU per dataset and setting.

Not part of CI: the bar needs torch, numpy and pillow (--python); ours needs a release build of the trainer.
Usage: python3 scripts/research/defaults_study.py --python /path/to/python-with-torch [--seeds 0 1 2]
"""
import argparse
import concurrent.futures
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))  # scripts/research/ -> the repository

# name -> trainer flags (schedule + augmentation); "pytorch" is the bar.
SETTINGS = {
    "cosine+none": ["--lr-schedule", "cosine", "--augment", "none"],
    "cosine+flips": ["--lr-schedule", "cosine", "--augment", "flips"],
    "cosine+all": ["--lr-schedule", "cosine", "--augment", "all"],
    "constant+none": ["--lr-schedule", "constant", "--augment", "none"],
    "constant+all": ["--lr-schedule", "constant", "--augment", "all"],
}


def run_ours(data, setting, seed, args):
    data = os.path.join(ROOT, data)
    trainer = os.path.join(ROOT, "target", "release", "trainer")
    with tempfile.TemporaryDirectory() as out:
        cmd = [trainer, "train", "--image", f"{data}/image.png", "--mask", f"{data}/mask.png",
               "--val-fraction", str(args.val_fraction), "--iterations", str(args.iterations),
               "--seed", str(seed), "--out", out, "--quiet", *SETTINGS[setting]]
        env = dict(os.environ, RAYON_NUM_THREADS="1")
        t0 = time.time()
        subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        with open(os.path.join(out, "val.csv")) as f:
            rows = list(csv.DictReader(f))
        last = rows[-1]
        best = max(rows, key=lambda r: float(r["iou"]))
        return {"iou": float(last["iou"]), "best_iou": float(best["iou"]), "best_iteration": int(best["iteration"]),
                "iteration": int(last["iteration"]), "seconds": time.time() - t0}


def run_bar(data, seed, args):
    data = os.path.join(ROOT, data)
    cmd = [args.python, os.path.join(HERE, "pytorch_baseline.py"), f"{data}/image.png",
           f"{data}/mask.png", "--val-fraction", str(args.val_fraction), "--iterations", str(args.iterations),
           "--seed", str(seed), "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, check=True, env=env, cwd=HERE, capture_output=True,
                         text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {"iou": r["iou"], "seconds": r["seconds"], "torch": r["torch"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", required=True, help="a Python with torch, numpy and pillow (for the bar)")
    p.add_argument("--data", nargs="+", default=["data/conifer", "data/ihc"])
    p.add_argument("--settings", nargs="+", default=["pytorch", *SETTINGS])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--lanes", type=int, default=2, help="trainings at once, one thread each")
    p.add_argument("--log", default="defaults_study.jsonl")
    args = p.parse_args()

    done = set()
    if os.path.exists(args.log):
        with open(args.log) as f:
            for line in f:
                r = json.loads(line)
                done.add((r["data"], r["setting"], r["seed"], r["iterations"]))
    jobs = [(d, s, seed) for seed in args.seeds for d in args.data for s in args.settings
            if (d, s, seed, args.iterations) not in done]
    lock = threading.Lock()

    def work(job):
        data, setting, seed = job
        r = run_bar(data, seed, args) if setting == "pytorch" else run_ours(data, setting, seed, args)
        r.update(data=data, setting=setting, seed=seed, iterations=args.iterations)
        with lock, open(args.log, "a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"{data} {setting} seed {seed}: IoU {r['iou']:.4f} ({r['seconds']:.0f} s)", flush=True)

    with concurrent.futures.ThreadPoolExecutor(args.lanes) as pool:
        for f in [pool.submit(work, j) for j in jobs]:
            f.result()

    results = {}
    with open(args.log) as f:
        for line in f:
            r = json.loads(line)
            if r["iterations"] == args.iterations:
                results.setdefault((r["data"], r["setting"]), []).append(r["iou"])
    print("| data | setting | runs | mean IoU | min | max |")
    print("|---|---|---|---|---|---|")
    for (data, setting), ious in sorted(results.items()):
        print(f"| {os.path.basename(data)} | {setting} | {len(ious)} | {statistics.mean(ious):.4f} | "
              f"{min(ious):.4f} | {max(ious):.4f} |")


if __name__ == "__main__":
    sys.exit(main())
