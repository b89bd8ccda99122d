"""Runs checkov's Kubernetes checks on what `hone package --k8s DIR
[--kserve]` wrote, KServe's workloads included, and fails on any of the
checks below that is not passed by every workload.

checkov reads pod specs from Deployments, Pods and the like, not from
KServe's CRDs, so each InferenceService is rendered here into the pod that
KServe would run for it: the ServingRuntime's container(s) and volumes
under the predictor's pod-level settings.

Left failing on purpose (docs/kubernetes.md says why): CKV_K8S_11 (CPU
limit), CKV_K8S_15 (pull policy Always), CKV_K8S_21 (default namespace),
CKV_K8S_43 (image digest), CKV2_K8S_6 (NetworkPolicy). On ModelMesh's
pods, CKV_K8S_29 (pod security context) and CKV_K8S_38 (service account
token) are its controller's: a ServingRuntime has no field for either.

usage: scan.py K8S_DIR CHECKOV
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

import yaml

DIR, CHECKOV = sys.argv[1], sys.argv[2]

CHECKS = {
    "CKV_K8S_8": "liveness probe",
    "CKV_K8S_9": "readiness probe",
    "CKV_K8S_16": "not privileged",
    "CKV_K8S_20": "no privilege escalation",
    "CKV_K8S_22": "read-only root filesystem",
    "CKV_K8S_23": "no root containers",
    "CKV_K8S_28": "NET_RAW dropped",
    "CKV_K8S_29": "pod security context",
    "CKV_K8S_30": "container security context",
    "CKV_K8S_31": "seccomp RuntimeDefault",
    "CKV_K8S_37": "capabilities minimised",
    "CKV_K8S_38": "no service account token",
    "CKV_K8S_40": "high numeric UID",
}

docs = []
for path in sorted(glob.glob(os.path.join(DIR, "**", "*.yaml"), recursive=True)):
    with open(path) as f:
        docs.append(yaml.safe_load(f))

work = tempfile.mkdtemp()
workloads = []
# Checks a workload cannot pass from what hone writes, by workload.
not_ours = {}
for d in docs:
    if d["kind"] == "Deployment":
        workloads.append(f"Deployment.default.{d['metadata']['name']}")
        with open(os.path.join(work, f"{d['metadata']['name']}-deployment.yaml"), "w") as f:
            yaml.safe_dump(d, f)
runtimes = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("ServingRuntime", "ClusterServingRuntime")}
for d in docs:
    if d["kind"] != "InferenceService":
        continue
    pred = d["spec"]["predictor"]
    rt = runtimes[pred["model"]["runtime"]]["spec"]
    spec = {k: v for k, v in pred.items()
            if k in ("securityContext", "automountServiceAccountToken", "serviceAccountName")}
    spec["containers"] = rt["containers"]
    spec["volumes"] = rt.get("volumes", []) + pred.get("volumes", [])
    name = f"{d['metadata']['name']}-predictor"
    if d["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode") == "ModelMesh":
        not_ours[f"Pod.default.{name}"] = {"CKV_K8S_29", "CKV_K8S_38"}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": d["metadata"].get("labels", {})}, "spec": spec}
    workloads.append(f"Pod.default.{name}")
    with open(os.path.join(work, f"{name}.yaml"), "w") as f:
        yaml.safe_dump(pod, f)

p = subprocess.run([CHECKOV, "-d", work, "--framework", "kubernetes", "--check", ",".join(CHECKS),
                    "-o", "json"], capture_output=True, text=True)
out = json.loads(p.stdout)
out = out[0] if isinstance(out, list) else out
results = out.get("results", {})
passed = {(c["check_id"], c["resource"]) for c in results.get("passed_checks", [])}
failed = [(c["check_id"], c["resource"]) for c in results.get("failed_checks", [])]
problems = [f"{cid} ({CHECKS[cid]}) failed on {res}" for cid, res in failed
            if cid not in not_ours.get(res, set())]
for w in workloads:
    for cid, what in CHECKS.items():
        if (cid, w) not in passed and (cid, w) not in failed:
            problems.append(f"{cid} ({what}) did not run on {w}")
for line in problems:
    print("FAIL ", line)
print(f"{len(workloads)} workloads ({', '.join(workloads)}), {len(CHECKS)} checks, {len(problems)} failures")
sys.exit(1 if problems or not workloads else 0)
