"""Validates the manifests `hone package --k8s DIR --kserve` wrote, offline,
against the real schemas.

Kubernetes kinds: kubernetes-validate (the official OpenAPI schemas) in
strict mode, so an unknown field fails as `kubectl apply` with strict field
validation would. KServe and Prometheus Operator kinds: their own CRD schemas, with unknown
fields refused the way the API server's strict field validation refuses
them. Every validator is first shown a broken manifest it must refuse.
The folder loads as `kubectl apply -R` would: every .yaml/.yml/.json file
is one object with apiVersion and kind, and no kind/name pair repeats.

usage: manifests.py K8S_DIR CRD_DIR...
"""
import copy
import glob
import os
import shutil
import subprocess
import sys

import jsonschema
import yaml

DIR, CRDS = sys.argv[1], sys.argv[2:]
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
            # Go regexes may set flags after the anchor; Python's must lead.
            if isinstance(n.get("pattern"), str) and n["pattern"].startswith("^(?i)"):
                n["pattern"] = "(?i)^" + n["pattern"][len("^(?i)"):]
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
    for path in [p for d in CRDS for p in glob.glob(os.path.join(d, "*.yaml"))]:
        crd = load(path)
        if crd["spec"]["names"]["kind"] != kind:
            continue
        group, version = api_version.split("/")
        assert crd["spec"]["group"] == group, (crd["spec"]["group"], group)
        for v in crd["spec"]["versions"]:
            if v["name"] == version:
                return strict(v["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no CRD schema for {kind} {api_version}")


def crd_validate(doc):
    try:
        jsonschema.validate(doc, crd_schema(doc["kind"], doc["apiVersion"]))
        return True, ""
    except jsonschema.ValidationError as e:
        return False, e.message


def report(name, ok, msg):
    print(f"{'ok  ' if ok else 'FAIL'}  {name}{'' if ok else ': ' + msg}")
    if not ok:
        failures.append(name)


files = sorted(p for ext in ("yaml", "yml", "json")
               for p in glob.glob(os.path.join(DIR, "**", f"*.{ext}"), recursive=True))
kinds = {}
seen = {}
for path in files:
    doc = load(path)
    rel = os.path.relpath(path, DIR)
    if not (isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind")):
        report(f"{rel} is an object kubectl apply -R can load", False, repr(doc)[:200])
        continue
    key = (doc["kind"], doc["metadata"]["name"])
    report(f"{rel}: {key[0]}/{key[1]} is written once", key not in seen, f"also in {seen.get(key)}")
    seen[key] = rel
    kinds[doc["kind"]] = doc
    if doc["apiVersion"].split("/")[0] in ("serving.kserve.io", "monitoring.coreos.com", "keda.sh"):
        ok, msg = crd_validate(doc)
    else:
        ok, msg = k8s_validate(doc, doc["kind"].lower())
    report(f"{rel} ({doc['kind']})", ok, msg)

# With KServe, its objects replace the Deployment, Service, autoscaler and
# budget: the folder deploys the model once either way.
kserve = "InferenceService" in kinds
if kserve:
    expected = {"ServingRuntime", "InferenceService", "PodMonitor", "PrometheusRule"}
    report("KServe output deploys the model once (no Deployment, Service, HPA or PDB of its own)",
           not ({"Deployment", "Service", "HorizontalPodAutoscaler", "ScaledObject",
                 "PodDisruptionBudget"} & set(kinds)), repr(sorted(kinds)))
else:
    expected = {"Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule"}

# The alert rules are valid Prometheus rules, by Prometheus' own checker.
if shutil.which("promtool"):
    tmp = os.path.join(DIR, ".check-rules.yml")
    with open(tmp, "w") as f:
        yaml.safe_dump({"groups": kinds["PrometheusRule"]["spec"]["groups"]}, f)
    try:
        p = subprocess.run(["promtool", "check", "rules", tmp], capture_output=True, text=True)
    finally:
        os.remove(tmp)
    report("promtool check rules", p.returncode == 0, (p.stdout + p.stderr).strip())
elif os.environ.get("HONE_REQUIRE_TOOLS"):
    report("promtool check rules", False, "HONE_REQUIRE_TOOLS is set but promtool is missing")
else:
    print("SKIPPED: promtool missing")
report("every kind written", expected <= set(kinds), f"missing {expected - set(kinds)}")
bad = copy.deepcopy(kinds["PrometheusRule"])
bad["spec"]["groups"][0]["rulez"] = []
report("the Prometheus Operator schema refuses an unknown field", not crd_validate(bad)[0], "accepted")


def container_ok(c):
    report(f"container {c['name']}: probes, restricted security context, memory sized",
           c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
           and c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
           and c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
           and c["securityContext"]["readOnlyRootFilesystem"] is True
           and c["securityContext"]["runAsNonRoot"] is True
           and c["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
           and c["resources"]["requests"]["memory"].endswith("Mi"), repr(c))


if not kserve:
    scalers = {"HorizontalPodAutoscaler", "ScaledObject"} & set(kinds)
    report("exactly one autoscaler (an HPA or KEDA's ScaledObject, never both)", len(scalers) == 1,
           repr(scalers))
    scaler = kinds[next(iter(scalers))] if scalers else {"spec": {"scaleTargetRef": {}}}
    # The validators refuse what they should, so a pass above means something.
    bad = copy.deepcopy(kinds["Deployment"])
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eight thousand"
    ok, _ = k8s_validate(bad, "bad-type")
    report("kubernetes-validate refuses a wrong type", not ok, "accepted")
    bad = copy.deepcopy(kinds["Deployment"])
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    ok, _ = k8s_validate(bad, "bad-field")
    report("kubernetes-validate refuses an unknown field", not ok, "accepted")
    bad = copy.deepcopy(kinds["ServiceMonitor"])
    bad["spec"]["endpoints"][0]["intervall"] = "15s"
    report("the ServiceMonitor schema refuses an unknown field", not crd_validate(bad)[0], "accepted")
    # What the deployment promises, field by field.
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    container_ok(c)
    report("numeric non-root user, read-only root",
           pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
           and c["securityContext"]["readOnlyRootFilesystem"] is True, repr(pod["securityContext"]))
    report("grace period covers the preStop pause and hone's exit timeout",
           pod["terminationGracePeriodSeconds"] >= c["lifecycle"]["preStop"]["sleep"]["seconds"] + 30, repr(pod))
    ports = {p["name"]: p["port"] for p in kinds["Service"]["spec"]["ports"]}
    report("service ports named http/grpc/metrics", ports == {"http": 8000, "grpc": 8001, "metrics": 8002},
           repr(ports))
    report("no replicas beside the autoscaler (apply must not reset its scale)",
           "replicas" not in kinds["Deployment"]["spec"]
           and scaler["spec"]["scaleTargetRef"].get("name") == kinds["Deployment"]["metadata"]["name"],
           repr(kinds["Deployment"]["spec"].get("replicas")))
else:
    bad = copy.deepcopy(kinds["InferenceService"])
    bad["spec"]["predictor"]["minReplicas"] = "two"
    report("the KServe schema refuses a wrong type", not crd_validate(bad)[0], "accepted")
    bad = copy.deepcopy(kinds["ServingRuntime"])
    bad["spec"]["supportedModelFormat"] = bad["spec"]["supportedModelFormats"]
    report("the KServe schema refuses an unknown field", not crd_validate(bad)[0], "accepted")
    rt = kinds["ServingRuntime"]["spec"]
    isvc = kinds["InferenceService"]
    storage = "storageUri" in isvc["spec"]["predictor"]["model"]
    mesh = rt.get("multiModel") is True
    args = rt["containers"][0]["args"]
    report("runtime: onnx, selected by name only",
           rt["supportedModelFormats"][0]["name"] == "onnx"
           and all(f.get("autoSelect") is False and "priority" not in f for f in rt["supportedModelFormats"]),
           repr(rt))
    report("the InferenceService names hone's runtime",
           isvc["spec"]["predictor"]["model"]["runtime"] == kinds["ServingRuntime"]["metadata"]["name"],
           repr(isvc))
    ports = {p["name"]: p["containerPort"] for p in rt["containers"][0]["ports"]}
    pm = kinds["PodMonitor"]["spec"]
    if mesh:
        # ModelMesh: its runtime API on hone's --modelmesh-port, V2 gRPC as
        # the data endpoint, models pulled from storage.
        flag = args[args.index("--modelmesh-port") + 1] if "--modelmesh-port" in args else None
        report("ModelMesh runtime: grpc-v2, hone's runtime API as grpcEndpoint, V2 gRPC as data endpoint",
               rt["protocolVersions"] == ["grpc-v2"] and rt["grpcEndpoint"] == f"port:{flag}"
               and rt["grpcDataEndpoint"] == f"port:{ports.get('grpc')}"
               and args[args.index("--grpc-port") + 1] == str(ports.get("grpc")), repr(rt))
        report("the ModelMesh InferenceService pulls its model from storage",
               storage and isvc["metadata"]["annotations"].get("serving.kserve.io/deploymentMode") == "ModelMesh",
               repr(isvc))
        report("runtime declares the HTTP, gRPC and metrics ports it serves",
               ports == {"http": 8000, "grpc": 8001, "metrics": 8002}, repr(ports))
        report("the PodMonitor scrapes the runtime pods' metrics port",
               pm["selector"]["matchLabels"] == {"name": "modelmesh-serving-" + kinds["ServingRuntime"]["metadata"]["name"]}
               and pm["podMetricsEndpoints"][0]["port"] == "metrics", repr(pm))
    else:
        report("runtime: V2 protocol, the right repository",
               "v2" in rt["protocolVersions"]
               and ("/mnt/models" if storage else "/models") in args, repr(rt))
        report("runtime declares the HTTP, gRPC and metrics ports it serves",
               ports == {"http1": 8080, "h2c": 8081, "metrics": 8002}, repr(ports))
        report("the PodMonitor scrapes the predictor pods' metrics port",
               pm["selector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
               and pm["podMetricsEndpoints"][0]["port"] == "metrics", repr(pm))
    for t in isvc["spec"]["predictor"].get("autoScaling", {}).get("metrics", []):
        report("KServe's KEDA metrics are Value targets (KServe reads target.value)",
               t["external"]["target"]["type"] == "Value" and "value" in t["external"]["target"], repr(t))
    for c in rt["containers"]:
        container_ok(c)

print(f"{len(files)} manifests, {len(failures)} failures")
sys.exit(1 if failures else 0)
