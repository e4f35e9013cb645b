#!/usr/bin/env python3
"""The Kubernetes Jobs of scripts/k8s/ parse as YAML and split the work as the Slurm scripts do (needs PyYAML).

No Kubernetes cluster runs them here: this checks their structure only. Each predict Job is a batch/v1
Indexed Job whose completions equal its parallelism and whose runner command takes
--shard "$JOB_COMPLETION_INDEX/N" with that N; the finalize Job finalizes the store the slide Job writes.

usage: check_k8s_jobs.py K8S_DIR
"""

import re
import sys
from pathlib import Path

import yaml


def fail(path, what):
    sys.exit(f"check_k8s_jobs: {path}: {what}")


def job(path):
    """The one Job of `path`, with its container's command as one string."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    if len(documents) != 1:
        fail(path, f"expected one YAML document, found {len(documents)}")
    doc = documents[0]
    if doc.get("apiVersion") != "batch/v1" or doc.get("kind") != "Job":
        fail(path, f"not a batch/v1 Job: {doc.get('apiVersion')} {doc.get('kind')}")
    pod = doc["spec"]["template"]["spec"]
    if pod.get("restartPolicy") != "Never":
        fail(path, "restartPolicy must be Never (a failed share is retried as a new pod)")
    containers = pod["containers"]
    if len(containers) != 1:
        fail(path, f"expected one container, found {len(containers)}")
    claims = {v["name"] for v in pod.get("volumes", [])}
    mounts = {m["name"] for m in containers[0].get("volumeMounts", [])}
    if not mounts <= claims:
        fail(path, f"mounts volumes that are not declared: {sorted(mounts - claims)}")
    return doc, " ".join(containers[0]["command"])


def predict_job(path):
    doc, command = job(path)
    spec = doc["spec"]
    if spec.get("completionMode") != "Indexed":
        fail(path, "completionMode must be Indexed (JOB_COMPLETION_INDEX is the share)")
    n = spec.get("completions")
    if not isinstance(n, int) or n < 1 or spec.get("parallelism") != n:
        fail(path, f"completions ({n}) and parallelism ({spec.get('parallelism')}) must be equal and positive")
    shard = re.search(r'--shard "?\$JOB_COMPLETION_INDEX/(\d+)"?', command)
    if not shard or int(shard.group(1)) != n:
        fail(path, f"the command must take --shard $JOB_COMPLETION_INDEX/{n}: {command}")
    if not command.startswith("sh -c runner predict "):
        fail(path, f"the command is not `runner predict` through sh -c: {command}")
    return command


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    k8s = Path(sys.argv[1])
    folder = predict_job(k8s / "predict-folder-job.yaml")
    if "--input-dir " not in folder or "--output-dir " not in folder:
        fail(k8s / "predict-folder-job.yaml", "the command needs --input-dir and --output-dir")
    slide = predict_job(k8s / "predict-slide-job.yaml")
    output = re.search(r"--output (\S+\.ome\.zarr)\b", slide)
    if not output or "--image " not in slide:
        fail(k8s / "predict-slide-job.yaml", "the command needs --image and an --output ending in .ome.zarr")
    finalize_path = k8s / "finalize-slide-job.yaml"
    _, finalize = job(finalize_path)
    if finalize != f"runner finalize {output.group(1)}":
        fail(finalize_path, f"expected `runner finalize {output.group(1)}`, found `{finalize}`")
    print(f"check_k8s_jobs: {k8s}: 3 Jobs parse and split as the Slurm scripts do (structure only, not run)")


if __name__ == "__main__":
    main()
