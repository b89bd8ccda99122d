"""Validates the manifests `hone package --k8s DIR --kserve` wrote, offline,
against the real schemas.

Kubernetes kinds: kubernetes-validate (the official OpenAPI schemas) in
strict mode, so an unknown field fails as `kubectl apply` with strict field
validation would. KServe kinds: KServe's own CRD schemas, with unknown
fields refused the way the API server's strict field validation refuses
them. ServiceMonitor has no schema offline: its fields are checked by hand.
Every validator is first shown a broken manifest it must refuse.

usage: manifests.py K8S_DIR KSERVE_CRD_DIR
"""
import copy
import glob
import os
import subprocess
import sys

import jsonschema
import yaml

DIR, CRDS = sys.argv[1], sys.argv[2]
failures = []


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def k8s_validate(doc, name):
    tmp = os.path.join(DIR, f".check-{name}.yaml")
    with open(tmp, "w") as f:
        yaml.safe_dump(doc, f)
    try:
        p = subprocess.run([os.path.join(os.path.dirname(sys.executable), "kubernetes-validate"),
                            "--strict", "--quiet", tmp], capture_output=True, text=True)
    finally:
        os.remove(tmp)
    return p.returncode == 0, (p.stdout + p.stderr).strip()


def strict(schema):
    """Unknown fields refused wherever the schema lists the known ones."""
    s = copy.deepcopy(schema)

    def walk(n):
        if isinstance(n, dict):
            if ("properties" in n and "additionalProperties" not in n
                    and not n.get("x-kubernetes-preserve-unknown-fields")):
                n["additionalProperties"] = False
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)
    walk(s)
    return s


def crd_schema(kind, api_version):
    for path in glob.glob(os.path.join(CRDS, "*.yaml")):
        crd = load(path)
        if crd["spec"]["names"]["kind"] != kind:
            continue
        group, version = api_version.split("/")
        assert crd["spec"]["group"] == group, (crd["spec"]["group"], group)
        for v in crd["spec"]["versions"]:
            if v["name"] == version:
                return strict(v["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no CRD schema for {kind} {api_version}")


def kserve_validate(doc):
    try:
        jsonschema.validate(doc, crd_schema(doc["kind"], doc["apiVersion"]))
        return True, ""
    except jsonschema.ValidationError as e:
        return False, e.message


def service_monitor_ok(doc):
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "ServiceMonitor"
    spec = doc["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}, spec
    assert spec["selector"]["matchLabels"], spec
    for e in spec["endpoints"]:
        assert set(e) <= {"port", "path", "interval", "scheme"}, e
        assert isinstance(e["port"], str) and e["path"].startswith("/"), e


def report(name, ok, msg):
    print(f"{'ok  ' if ok else 'FAIL'}  {name}{'' if ok else ': ' + msg}")
    if not ok:
        failures.append(name)


files = sorted(glob.glob(os.path.join(DIR, "**", "*.yaml"), recursive=True))
kinds = {}
for path in files:
    doc = load(path)
    rel = os.path.relpath(path, DIR)
    kinds[doc["kind"]] = doc
    if doc["apiVersion"].startswith("serving.kserve.io/"):
        ok, msg = kserve_validate(doc)
    elif doc["kind"] == "ServiceMonitor":
        try:
            service_monitor_ok(doc)
            ok, msg = True, ""
        except AssertionError as e:
            ok, msg = False, repr(e)
    else:
        ok, msg = k8s_validate(doc, doc["kind"].lower())
    report(f"{rel} ({doc['kind']})", ok, msg)

expected = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor",
            "ConfigMap", "ClusterServingRuntime", "InferenceService"}
report("every kind written", expected <= set(kinds), f"missing {expected - set(kinds)}")

# The validators refuse what they should, so a pass above means something.
bad = copy.deepcopy(kinds["Deployment"])
bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eight thousand"
ok, _ = k8s_validate(bad, "bad-type")
report("kubernetes-validate refuses a wrong type", not ok, "accepted")
bad = copy.deepcopy(kinds["Deployment"])
bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
ok, _ = k8s_validate(bad, "bad-field")
report("kubernetes-validate refuses an unknown field", not ok, "accepted")
bad = copy.deepcopy(kinds["InferenceService"])
bad["spec"]["predictor"]["minReplicas"] = "two"
report("the KServe schema refuses a wrong type", not kserve_validate(bad)[0], "accepted")
bad = copy.deepcopy(kinds["ClusterServingRuntime"])
bad["spec"]["supportedModelFormat"] = bad["spec"]["supportedModelFormats"]
report("the KServe schema refuses an unknown field", not kserve_validate(bad)[0], "accepted")

# What the deployment promises, field by field.
pod = kinds["Deployment"]["spec"]["template"]["spec"]
c = pod["containers"][0]
report("probes on the V2 health routes",
       c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
       and c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
       and c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live", repr(c))
report("numeric non-root user, read-only root",
       pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
       and c["securityContext"]["readOnlyRootFilesystem"] is True, repr(pod["securityContext"]))
report("grace period covers the preStop pause and hone's exit timeout",
       pod["terminationGracePeriodSeconds"] >= c["lifecycle"]["preStop"]["sleep"]["seconds"] + 30, repr(pod))
ports = {p["name"]: p["port"] for p in kinds["Service"]["spec"]["ports"]}
report("service ports named http/grpc/metrics", ports == {"http": 8000, "grpc": 8001, "metrics": 8002}, repr(ports))
rt = kinds["ClusterServingRuntime"]["spec"]
report("runtime: V2 protocol, onnx, /mnt/models",
       "v2" in rt["protocolVersions"] and rt["supportedModelFormats"][0]["name"] == "onnx"
       and "/mnt/models" in rt["containers"][0]["args"], repr(rt))

print(f"{len(files)} manifests, {len(failures)} failures")
sys.exit(1 if failures else 0)
