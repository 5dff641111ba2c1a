"""Offline checks of k8s/: schemas (Kubernetes + KubeRay CRDs) and the invariants a cluster relies on.

Every kustomization is rendered with `kubectl kustomize`; nothing talks to a cluster. Each invariant is a
function returning a list of problems, so the negative tests can show it actually catches a broken manifest.

The KubeRay CRDs are data kept beside the repository (`../shared/kuberay-crds`, or the directory named by
$KUBERAY_CRDS). A fresh clone without them skips the checks that need them, with the reason; when $CI is set
those checks fail instead, so a CI run can never pass by skipping them (see `kuberay_crd_dir`).
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
# ray-project/kuberay's ray-operator/config/crd/bases; $KUBERAY_CRDS points elsewhere.
CRD_DIR = Path(os.environ.get("KUBERAY_CRDS") or ROOT.parent / "shared" / "kuberay-crds")
KUSTOMIZATIONS = {
    "storage": K8S / "storage",
    "base": K8S / "base",
    "gpu": K8S / "overlays" / "gpu",
    "cpu-only": K8S / "overlays" / "cpu-only",
}
WORKLOADS = ("base", "gpu", "cpu-only")
KUBERNETES_VERSION = "1.32"
NAMESPACE = "parallel-training"
MOUNT = "/mnt/experiments"
IMAGE = "parallel-orchestrator"
# The project image's tag: Ray version, Python, flavor, and the git revision it was built from.
PROJECT_TAG = re.compile(r"(?P<ray>\d+\.\d+\.\d+)-py311-(?P<flavor>gpu|cpu)-(?P<revision>[0-9a-f]{7,40})")
FLAVORS = {"base": "gpu", "gpu": "gpu", "cpu-only": "cpu"}
# The Role KubeRay's operator creates for the autoscaler of every cluster and binds to the head's
# ServiceAccount (BuildRole in ray-operator/controllers/ray/common/rbac.go, KubeRay 1.5.1 to 1.7):
# the most the head may hold. (API group, resource) -> verbs.
KUBERAY_AUTOSCALER_RULES = {
    ("", "pods"): {"get", "list", "watch", "patch"},
    ("", "pods/resize"): {"patch"},
    ("ray.io", "rayclusters"): {"get", "patch"},
}
# Caches that default to read-only places under $HOME; the Ray containers send them to a writable volume.
CACHE_ENV = ("XDG_CACHE_HOME", "MPLCONFIGDIR", "TORCH_HOME", "TRITON_CACHE_DIR", "CUDA_CACHE_PATH")
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
# Ray's default object store share of a node's memory; /dev/shm must hold it.
OBJECT_STORE_SHARE = 0.3
# The cloud metadata service (node credentials): IPv4 on every major cloud, IPv6 on AWS.
METADATA_ADDRESSES = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))
Doc = dict[str, Any]


# ---------------------------------------------------------------- rendering and schemas


@functools.cache
def _render(name: str) -> tuple[Doc, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed; it renders the kustomizations (apt-get install kubectl)")
    done = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZATIONS[name])], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {name} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def render(name: str) -> list[Doc]:
    return copy.deepcopy(list(_render(name)))


def one(docs: list[Doc], kind: str) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _strict(schema: Any) -> Any:
    """Apply the API server's structural-schema rules that plain JSON Schema lacks."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {key: _strict(sub) for key, sub in out["properties"].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = _strict(out[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [_strict(sub) for sub in out[key]]
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    # Unknown fields are pruned (silently lost) by the API server: treat them as errors here.
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def kuberay_crd_dir(directory: Path | None = None) -> Path:
    """The directory holding the KubeRay CRDs. Without it: skip locally, fail when $CI is set.

    The one place that decides skip versus fail; everything that reads a CRD goes through it.
    """
    directory = CRD_DIR if directory is None else directory
    missing = [name for name in CRD_FILES.values() if not (directory / name).is_file()]
    if not missing:
        return directory
    reason = (
        f"KubeRay CRDs {', '.join(missing)} not found in {directory}: put ray-project/kuberay's "
        "ray-operator/config/crd/bases files in ../shared/kuberay-crds or set KUBERAY_CRDS"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: CI must run the CRD checks, never skip them)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def kuberay_crds() -> Path:
    """For tests that need the KubeRay CRDs: skips or fails through `kuberay_crd_dir`."""
    return kuberay_crd_dir()


@functools.cache
def _crd_schema(kind: str, directory: Path) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((directory / CRD_FILES[kind]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    return _crd_schema(kind, kuberay_crd_dir())


def schema_errors(doc: Doc) -> list[str]:
    if doc["kind"] in CRD_FILES:
        assert doc["apiVersion"] == "ray.io/v1", doc["apiVersion"]
        return [
            f"{doc['kind']} {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in crd_validator(doc["kind"]).iter_errors(doc)
        ]
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{doc['kind']}: {exc}"]
    return []


# ---------------------------------------------------------------- walking pods and containers


def ray_cluster_specs(doc: Doc) -> list[Doc]:
    if doc["kind"] == "RayCluster":
        return [doc["spec"]]
    if doc["kind"] == "RayJob":
        return [doc["spec"]["rayClusterSpec"]]
    return []


class Pod(NamedTuple):
    where: str
    role: str  # head, worker, submitter or other
    labels: dict[str, str]  # as the pod will carry them, with the ones KubeRay adds
    spec: Doc  # the pod spec as written in the manifest
    cluster: Doc | None = None  # the RayCluster spec of a head or worker
    cluster_name: str = ""


def pod_templates(doc: Doc) -> Iterator[Pod]:
    """Every pod the document creates."""
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    for spec in ray_cluster_specs(doc):
        # KubeRay's labelPod: these keys always win; a RayJob's cluster is named <job>-<random>.
        cluster = doc["metadata"]["name"] + ("-xxxxx" if doc["kind"] == "RayJob" else "")
        groups = [("head", "headgroup", spec["headGroupSpec"])]
        groups += [("worker", g["groupName"], g) for g in spec.get("workerGroupSpecs", [])]
        for role, group, group_spec in groups:
            template = group_spec["template"]
            labels = {"ray.io/is-ray-node": "yes", "app.kubernetes.io/name": "kuberay"}
            labels |= (template.get("metadata") or {}).get("labels") or {}
            labels |= {"ray.io/cluster": cluster, "ray.io/node-type": role, "ray.io/group": group}
            where = f"{name} {'head' if role == 'head' else group}"
            yield Pod(where, role, labels, template["spec"], spec, cluster)
    if doc["kind"] == "RayJob" and "submitterPodTemplate" in doc["spec"]:
        template = doc["spec"]["submitterPodTemplate"]
        labels = {**((template.get("metadata") or {}).get("labels") or {}), "job-name": doc["metadata"]["name"]}
        yield Pod(f"{name} submitter", "submitter", labels, template["spec"])
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        template = doc["spec"]["template"]
        yield Pod(name, "other", dict((template.get("metadata") or {}).get("labels") or {}), template["spec"])
    if doc["kind"] == "Pod":
        yield Pod(name, "other", dict(doc["metadata"].get("labels") or {}), doc["spec"])


def pod_specs(doc: Doc) -> Iterator[tuple[str, str, Doc]]:
    """(where, role, pod spec) for every pod the document creates; role is ray, submitter or other."""
    for pod in pod_templates(doc):
        yield pod.where, "ray" if pod.role in ("head", "worker") else pod.role, pod.spec


def as_created(pod: Pod) -> Doc:
    """The pod spec as KubeRay creates it from the template, so the checks also see what KubeRay adds.

    Follows KubeRay 1.5 (ray-operator/controllers/ray/common/pod.go). The head of an autoscaling cluster
    gets the autoscaler sidecar: the head's image unless autoscalerOptions.image, pull policy IfNotPresent
    unless autoscalerOptions.imagePullPolicy, autoscalerOptions' resources (else 500m/512Mi),
    securityContext and volumeMounts; both containers get an emptyDir `ray-logs` at /tmp/ray unless
    something is mounted there already; the pod runs as the head template's ServiceAccount, else one
    named after the cluster. Every worker gets the init container `wait-gcs-ready`, a copy of the worker
    container's image, pull policy, security context, env and volume mounts with 200m/256Mi.
    """
    spec = copy.deepcopy(pod.spec)
    ray = spec["containers"][0] if pod.cluster else None
    if ray and pod.role == "head" and pod.cluster.get("enableInTreeAutoscaling"):
        options = pod.cluster.get("autoscalerOptions") or {}
        default = {"cpu": "500m", "memory": "512Mi"}
        sidecar = {
            "name": "autoscaler",
            "image": options.get("image", ray.get("image")),
            "imagePullPolicy": options.get("imagePullPolicy", "IfNotPresent"),
            "resources": copy.deepcopy(options.get("resources", {"requests": default, "limits": default})),
            "securityContext": copy.deepcopy(options.get("securityContext")),
            "volumeMounts": copy.deepcopy(options.get("volumeMounts", [])),
        }
        spec["containers"].append(sidecar)
        spec["serviceAccountName"] = spec.get("serviceAccountName") or pod.cluster_name
        for container in (ray, sidecar):
            mounts = container.setdefault("volumeMounts", [])
            if all(m["mountPath"] != "/tmp/ray" for m in mounts):
                mounts.append({"name": "ray-logs", "mountPath": "/tmp/ray"})
                if all(v["name"] != "ray-logs" for v in spec.setdefault("volumes", [])):
                    spec["volumes"].append({"name": "ray-logs", "emptyDir": {}})
    if ray and pod.role == "worker":
        fixed = {"cpu": "200m", "memory": "256Mi"}
        init = {
            "name": "wait-gcs-ready",
            "image": ray.get("image"),
            "imagePullPolicy": ray.get("imagePullPolicy"),
            "resources": {"requests": fixed, "limits": fixed},
            "securityContext": copy.deepcopy(ray.get("securityContext")),
            "env": copy.deepcopy(ray.get("env", [])),
            "volumeMounts": copy.deepcopy(ray.get("volumeMounts", [])),
        }
        spec["initContainers"] = [*spec.get("initContainers", []), init]
    return spec


def containers(doc: Doc) -> Iterator[tuple[str, Doc, Doc]]:
    """(where, container, pod spec as created) for every container, KubeRay's additions included."""
    for pod in pod_templates(doc):
        spec = as_created(pod)
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield f"{pod.where} {container['name']}", container, spec


def quantity(value: str | int | float) -> float:
    text = str(value)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    assert match and (match[2] in units or not match[2]), f"bad quantity {text!r}"
    return float(match[1]) * units.get(match[2], 1)


def pyproject_ray_version() -> str:
    # A regex rather than tomllib, which Python 3.10 lacks.
    text = (ROOT / "pyproject.toml").read_text()
    pins = re.findall(r"""^\s*["']ray(?:\[[^\]]*\])?==([\w.]+)["']""", text, re.M)
    assert len(pins) == 1, f"pyproject.toml must pin ray exactly once (ray[tune]==X.Y.Z), found {pins}"
    return pins[0]


def results_reader() -> list[Doc]:
    return list(yaml.safe_load_all((K8S / "tools" / "results-reader.yaml").read_text()))


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if not {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]:
            return False
    return True


def experiment_config(docs: list[Doc]) -> tuple[str, Doc]:
    """The launcher's config path from the RayJob entrypoint, and that file's parsed ConfigMap content."""
    argv = shlex.split(one(docs, "RayJob")["spec"]["entrypoint"])
    path = argv[argv.index("orchestrator.launch") + 1]
    head = one(docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    mount = next(m for m in head["containers"][0]["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in head["volumes"] if v["name"] == mount["name"])
    config_map = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
    )
    return path, yaml.safe_load(config_map["data"][path[len(mount["mountPath"]) + 1 :]])


# ---------------------------------------------------------------- invariants (each returns problems)


def restricted_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for where, container, _ in _all_containers(docs):
        sc = container.get("securityContext") or {}
        res = container.get("resources") or {}
        if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") == 0:
            problems.append(f"{where}: runAsNonRoot must be true")
        if sc.get("allowPrivilegeEscalation") is not False or sc.get("privileged"):
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if "ALL" not in (sc.get("capabilities") or {}).get("drop", []) or set(
            (sc.get("capabilities") or {}).get("add", [])
        ) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: capabilities must drop ALL")
        if (sc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccompProfile must be RuntimeDefault")
        for kind in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(kind) or {}):
                problems.append(f"{where}: resources.{kind} needs cpu and memory")
        for key, limit in (res.get("limits") or {}).items():
            if key in (res.get("requests") or {}) and quantity(res["requests"][key]) > quantity(limit):
                problems.append(f"{where}: {key} request exceeds its limit")
        if any("hostPort" in port for port in container.get("ports", [])):
            problems.append(f"{where}: hostPort exposes the pod on the node")
    for doc in docs:
        for where, _, pod in pod_specs(doc):
            if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
                problems.append(f"{where}: host namespaces are not allowed")
            if any("hostPath" in volume for volume in pod.get("volumes", [])):
                problems.append(f"{where}: hostPath volumes are not allowed")
    return problems


def _all_containers(docs: list[Doc]) -> Iterator[tuple[str, Doc, Doc]]:
    for doc in docs:
        yield from containers(doc)


def public_service_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Ingress", "Gateway", "HTTPRoute"):
            problems.append(f"{name}: no ingress of any kind")
        if doc["kind"] == "Service":
            spec = doc["spec"]
            if spec.get("type", "ClusterIP") != "ClusterIP" or spec.get("externalIPs"):
                problems.append(f"{name}: only ClusterIP services without externalIPs")
        for spec in ray_cluster_specs(doc):
            head = spec["headGroupSpec"]
            head_service_type = ((head.get("headService") or {}).get("spec") or {}).get("type", "ClusterIP")
            if head.get("serviceType") != "ClusterIP" or head_service_type != "ClusterIP":
                problems.append(f"{name}: the head (dashboard, job API) must be a ClusterIP service")
            if head.get("enableIngress"):
                problems.append(f"{name}: enableIngress exposes the dashboard")
    return problems


def storage_problems(docs: list[Doc], claim: str) -> list[str]:
    """The PVC is mounted at MOUNT on every Ray pod and is what the RayJob and config use as storage_path."""
    problems = []
    for doc in docs:
        for where, role, pod in pod_specs(doc):
            volumes = [
                v["name"]
                for v in pod.get("volumes", [])
                if (v.get("persistentVolumeClaim") or {}).get("claimName") == claim
            ]
            if role == "submitter":
                continue  # it only calls the job API
            if role == "ray" and not volumes:
                problems.append(f"{where}: does not mount the PVC {claim}")
            for container in pod["containers"] if volumes else []:
                paths = {m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in volumes}
                if paths != {MOUNT}:
                    problems.append(f"{where} {container['name']}: PVC mounted at {paths or 'nothing'}")
    argv = shlex.split(one(docs, "RayJob")["spec"]["entrypoint"])
    if "--storage-path" not in argv or argv[argv.index("--storage-path") + 1] != MOUNT:
        problems.append(f"RayJob entrypoint must pass --storage-path {MOUNT}: {argv}")
    _, config = experiment_config(docs)
    if config.get("storage_path") != MOUNT:
        problems.append(f"config storage_path {config.get('storage_path')!r} != {MOUNT}")
    if not str((config.get("data") or {}).get("root", "")).startswith(MOUNT + "/"):
        problems.append("config data.root must be on the PVC so the dataset is downloaded once")
    return problems


def metadata_egress_problems(docs: list[Doc]) -> list[str]:
    """Which pods may open a connection to the cloud metadata address under the NetworkPolicies.

    Policies add up: a pod reaches an address if no egress policy selects it (egress is then unrestricted)
    or if any egress rule of any policy selecting it admits the address: a rule without `to` admits
    everything, an ipBlock admits its CIDR minus its `except` list. Pod and namespace selectors admit pods
    only, never the metadata address. Ports are ignored: a rule open on any port counts.
    """
    policies = [doc for doc in docs if doc["kind"] == "NetworkPolicy"]
    problems = []
    for doc in docs:
        for pod in pod_templates(doc):
            egress = [
                policy
                for policy in policies
                if policy["metadata"].get("namespace") == doc["metadata"].get("namespace")
                and "Egress" in policy_types(policy)
                and selects(policy["spec"]["podSelector"], pod.labels)
            ]
            if not egress:
                problems.append(f"{pod.where}: no egress NetworkPolicy selects it, so it may reach anything")
            for policy in egress:
                for index, rule in enumerate(policy["spec"].get("egress") or []):
                    for address in METADATA_ADDRESSES:
                        if rule_admits(rule, address):
                            where = f"NetworkPolicy/{policy['metadata']['name']} egress[{index}]"
                            problems.append(f"{pod.where}: {where} admits the metadata address {address}")
    return problems


def policy_types(policy: Doc) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])]


def rule_admits(rule: Doc, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if not rule.get("to"):
        return True
    blocks = [peer["ipBlock"] for peer in rule["to"] if "ipBlock" in peer]
    return any(
        address in ipaddress.ip_network(block["cidr"])
        and not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except") or [])
        for block in blocks
    )


def writable_paths(container: Doc, pod: Doc) -> list[str]:
    """Mount paths the container can write: emptyDirs and PVCs that are not mounted or claimed read-only."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    paths = []
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        claim = volume.get("persistentVolumeClaim")
        if not mount.get("readOnly") and ("emptyDir" in volume or (claim and not claim.get("readOnly"))):
            paths.append(mount["mountPath"])
    return paths


def read_only_root_problems(docs: list[Doc]) -> list[str]:
    """Every container (KubeRay's too) has a read-only root filesystem and a writable /tmp (an emptyDir); in the
    Ray containers, each cache variable of CACHE_ENV is set and points into a writable mount."""
    problems = []
    for doc in docs:
        for pod in pod_templates(doc):
            spec = as_created(pod)
            for container in spec.get("initContainers", []) + spec["containers"]:
                where = f"{pod.where} {container['name']}"
                if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{where}: readOnlyRootFilesystem must be true")
                writable = writable_paths(container, spec)
                tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
                if "/tmp" not in writable or not all(
                    "emptyDir" in next(v for v in spec["volumes"] if v["name"] == m["name"]) for m in tmp
                ):
                    problems.append(f"{where}: /tmp must be a writable emptyDir mount")
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                is_ray = pod.role in ("head", "worker") and container is spec["containers"][0]
                for name in CACHE_ENV:
                    if is_ray and name not in env:
                        problems.append(f"{where}: {name} is not set, so its cache is on the read-only root")
                    path = env.get(name)
                    if name in env and not any(path == w or str(path).startswith(w + "/") for w in writable):
                        problems.append(f"{where}: {name}={path} is not on a writable mount")
    return problems


def rbac_problems(docs: list[Doc]) -> list[str]:
    """Namespaced RBAC only, nothing beyond KubeRay's autoscaler rules, granted to the Ray head's
    ServiceAccount alone, and only the head pods mount an API token."""
    problems = []
    accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
    pods = [(pod, as_created(pod)) for doc in docs for pod in pod_templates(doc)]
    head_accounts = {spec.get("serviceAccountName") for pod, spec in pods if pod.role == "head"}
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            problems.append(f"{name}: cluster-wide RBAC is not allowed")
        if doc["kind"] == "Role":
            for rule in doc.get("rules", []):
                fields = [rule.get(key) or [] for key in ("apiGroups", "resources", "verbs", "resourceNames")]
                if any("*" in field for field in fields) or rule.get("nonResourceURLs"):
                    problems.append(f"{name}: wildcards and non-resource URLs are not allowed: {rule}")
                for group in rule.get("apiGroups", []):
                    for resource in rule.get("resources", []):
                        extra = set(rule.get("verbs", [])) - KUBERAY_AUTOSCALER_RULES.get((group, resource), set())
                        if extra:
                            problems.append(
                                f"{name}: {sorted(extra)} on {group or 'core'}/{resource} is more "
                                "than KubeRay's autoscaler Role grants"
                            )
        if doc["kind"] == "RoleBinding":
            if doc["roleRef"]["kind"] != "Role":
                problems.append(f"{name}: binds a {doc['roleRef']['kind']}; only namespaced Roles are allowed")
            for subject in doc.get("subjects", []):
                if subject["kind"] != "ServiceAccount" or subject["name"] not in head_accounts - {None}:
                    problems.append(f"{name}: binds {subject['kind']}/{subject['name']}, not the Ray head's account")
                elif subject.get("namespace", doc["metadata"].get("namespace")) != doc["metadata"].get("namespace"):
                    problems.append(f"{name}: binds a ServiceAccount of another namespace")
    for pod, spec in pods:
        account = spec.get("serviceAccountName") or "default"
        automount = spec.get("automountServiceAccountToken")
        if automount is None:  # the pod inherits its ServiceAccount's setting, true unless that says false
            automount = accounts.get(account, {}).get("automountServiceAccountToken", True)
        # A projected token for another audience (a cloud's STS) is no key to the Kubernetes API.
        projected = any(
            "serviceAccountToken" in source and not source["serviceAccountToken"].get("audience")
            for volume in spec.get("volumes", [])
            for source in (volume.get("projected") or {}).get("sources", [])
        )
        if pod.role == "head":
            if account not in accounts:
                problems.append(f"{pod.where}: runs as {account}, which the manifests do not define")
            continue
        if automount or projected:
            problems.append(f"{pod.where}: mounts an API token; only the Ray head may")
        if account not in accounts or accounts[account].get("automountServiceAccountToken") is not False:
            problems.append(f"{pod.where}: runs as {account}, not a ServiceAccount with automount false")
        if account in head_accounts:
            problems.append(f"{pod.where}: shares the Ray head's ServiceAccount {account}")
    return problems


def split_image(image: str) -> tuple[str, str, str]:
    """registry/repository, tag, digest; a registry port (host:5000/x) is not a tag."""
    name, _, digest = image.partition("@")
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        repository, tag = name, ""
    return repository, tag, digest


def image_problems(docs: list[Doc], flavor: str) -> list[str]:
    """Every image is pinned (a tag that is not `latest`, or a digest) and pulled IfNotPresent; the project
    image is tagged <ray version>-py311-<flavor>-<git revision>, one revision for the whole deployment."""
    problems, revisions = [], set()
    for where, container, _ in _all_containers(docs):
        image = container.get("image") or ""
        repository, tag, digest = split_image(image)
        if not (tag or digest) or tag == "latest":
            problems.append(f"{where}: {image!r} is not pinned (no tag, or :latest)")
        if container.get("imagePullPolicy") != "IfNotPresent":
            problems.append(f"{where}: imagePullPolicy {container.get('imagePullPolicy')!r}, not IfNotPresent")
        if repository.rsplit("/", 1)[-1] != IMAGE:
            continue
        match = PROJECT_TAG.fullmatch(tag)
        if not match:
            problems.append(f"{where}: {image!r} is not tagged <ray>-py311-<gpu|cpu>-<git short sha>")
            continue
        if match["ray"] != pyproject_ray_version() or match["flavor"] != flavor:
            problems.append(f"{where}: {image!r} is not Ray {pyproject_ray_version()}, flavor {flavor}")
        revisions.add(match["revision"])
    if len(revisions) > 1:
        problems.append(f"pods run different revisions of the project image: {sorted(revisions)}")
    return problems


def fit_problems(resources: Doc, spec: Doc) -> list[str]:
    """Whether one trial fits a worker of the cluster: the GPU group if it asks for a GPU."""
    groups = {
        g["groupName"]: g["template"]["spec"]["containers"][0]["resources"]["limits"]
        for g in spec.get("workerGroupSpecs", [])
    }
    cpu, gpu = float(resources.get("cpu", 1)), resources.get("gpu", 0)
    if gpu == "auto":  # the launcher's rule: 1/trials_per_gpu of a GPU when the cluster has GPUs
        has_gpus = any("nvidia.com/gpu" in limits for limits in groups.values())
        gpu = 1 / int(resources.get("trials_per_gpu", 8)) if has_gpus else 0.0
    gpu = float(gpu)
    candidates = {n: lim for n, lim in groups.items() if gpu == 0 or "nvidia.com/gpu" in lim}
    if not candidates:
        return [f"trial needs {gpu} GPU but no worker group has nvidia.com/gpu"]
    fits = [
        n
        for n, lim in candidates.items()
        if cpu <= quantity(lim["cpu"]) and gpu <= quantity(lim.get("nvidia.com/gpu", 0))
    ]
    return [] if fits else [f"trial (cpu={cpu}, gpu={gpu}) fits no worker group: {candidates}"]


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_every_builtin_object_validates_against_the_kubernetes_schema(name: str) -> None:
    docs = [doc for doc in render(name) if doc["kind"] not in CRD_FILES]
    assert docs
    assert {doc["apiVersion"].split("/")[0] for doc in docs} <= {
        "v1",
        "apps",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
    }
    assert [e for doc in docs for e in schema_errors(doc)] == []


@pytest.mark.parametrize("name", WORKLOADS)
def test_ray_resources_validate_against_the_kuberay_crds(name: str, kuberay_crds: Path) -> None:
    docs = [doc for doc in render(name) if doc["kind"] in CRD_FILES]
    assert sorted(doc["kind"] for doc in docs) == ["RayCluster", "RayJob"]
    assert [e for doc in docs for e in schema_errors(doc)] == []


@pytest.mark.parametrize("name", WORKLOADS)
def test_containers_are_restricted_and_bounded(name: str) -> None:
    docs = render(name)
    assert len(list(_all_containers(docs))) >= 6
    assert restricted_problems(docs) == []


@pytest.mark.parametrize("name", WORKLOADS)
def test_nothing_is_exposed_outside_the_cluster(name: str) -> None:
    assert public_service_problems(render(name)) == []


def test_namespace_enforces_restricted_and_pvc_is_shared() -> None:
    docs = render("storage")
    labels = one(docs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert one(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in WORKLOADS:
        assert {doc["metadata"].get("namespace") for doc in render(name)} == {NAMESPACE}


@pytest.mark.parametrize("name", WORKLOADS)
def test_storage_path_is_the_pvc_mount_everywhere(name: str) -> None:
    docs = render(name)
    claim = one(render("storage"), "PersistentVolumeClaim")["metadata"]["name"]
    assert storage_problems(docs, claim) == []
    tensorboard = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert (
        tensorboard["containers"][0]["command"][tensorboard["containers"][0]["command"].index("--logdir") + 1] == MOUNT
    )
    # TensorBoard can never change results: the PVC is read-only in the volume and in the mount.
    claims = {v["name"]: v["persistentVolumeClaim"] for v in tensorboard["volumes"] if "persistentVolumeClaim" in v}
    assert claims and all(claim.get("readOnly") for claim in claims.values())
    assert all(m.get("readOnly") for m in tensorboard["containers"][0]["volumeMounts"] if m["name"] in claims)


@pytest.mark.parametrize("name", WORKLOADS)
def test_ray_cluster_shape(name: str) -> None:
    docs = render(name)
    cluster, job = one(docs, "RayCluster"), one(docs, "RayJob")
    # The interactive cluster and every RayJob attempt must be the same cluster.
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]
    spec = cluster["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["authOptions"]["mode"] == "token"
    assert spec["workerGroupSpecs"], "no worker group"
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["maxReplicas"] and group["maxReplicas"] >= 1
    for where, role, pod in (p for doc in docs for p in pod_specs(doc)):
        if role != "ray":
            continue
        ray = pod["containers"][0]
        shm = [
            v
            for v in pod["volumes"]
            if v.get("emptyDir", {}).get("medium") == "Memory"
            and any(m["name"] == v["name"] and m["mountPath"] == "/dev/shm" for m in ray["volumeMounts"])
        ]
        assert shm, f"{where}: /dev/shm is not a memory volume"
        need = OBJECT_STORE_SHARE * quantity(ray["resources"]["limits"]["memory"])
        assert quantity(shm[0]["emptyDir"]["sizeLimit"]) >= need, f"{where}: /dev/shm smaller than the object store"


@pytest.mark.parametrize("name", WORKLOADS)
def test_rayjob_retries_resume_and_clean_up(name: str) -> None:
    spec = one(render(name), "RayJob")["spec"]
    assert spec["backoffLimit"] >= 1
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    # InteractiveMode forbids retries; only a submitted entrypoint is rerun on a new cluster.
    assert spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "-m", "orchestrator.launch"]
    assert "--name" not in argv, "the experiment name must come from the config so a retry finds it"


@pytest.mark.parametrize("name", WORKLOADS)
def test_configmap_config_passes_the_launcher_dry_run(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.launch import main  # imported here: the other checks need no torch

    docs = render(name)
    path, config = experiment_config(docs)
    file = tmp_path / Path(path).name
    file.write_text(yaml.safe_dump(config))
    argv = shlex.split(one(docs, "RayJob")["spec"]["entrypoint"])
    argv[argv.index(path)] = str(file)
    assert main([*argv[argv.index("orchestrator.launch") + 1 :], "--dry-run"]) == 0, capsys.readouterr()
    assert f"-> {MOUNT}/{config['name']}" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["base", "gpu"])
def test_gpu_workers_fit_the_shipped_trial_resources(name: str) -> None:
    docs = render(name)
    spec = one(docs, "RayCluster")["spec"]
    gpu_groups = [
        g
        for g in spec["workerGroupSpecs"]
        if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]
    ]
    assert len(gpu_groups) == 1
    tolerations = gpu_groups[0]["template"]["spec"].get("tolerations", [])
    assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)
    shipped = yaml.safe_load((ROOT / "configs" / "parallel.yaml").read_text())
    only_gpu = dict(spec, workerGroupSpecs=gpu_groups)
    assert fit_problems(shipped.get("resources", {}), only_gpu) == []
    resources = experiment_config(docs)[1].get("resources", {})
    assert fit_problems(resources, only_gpu) == []
    # GPU workers scale from zero, so at launch the cluster has no GPU yet: "auto" would pick CPU-only
    # trials and nothing would ever ask the autoscaler for a GPU node. The cluster config says it outright.
    gpu = resources.get("gpu")
    assert isinstance(gpu, int | float) and gpu > 0, f"resources.gpu must be an explicit fraction, got {gpu!r}"


def test_cpu_only_overlay_has_no_gpu_anywhere() -> None:
    docs = render("cpu-only")
    assert "nvidia.com/gpu" not in yaml.safe_dump_all(docs)
    config = experiment_config(docs)[1]
    assert float(config.get("resources", {}).get("gpu", 0)) == 0
    assert fit_problems(config.get("resources", {}), one(docs, "RayCluster")["spec"]) == []


@pytest.mark.parametrize("name", WORKLOADS)
def test_image_and_ray_version_agree_with_pyproject(name: str) -> None:
    version = pyproject_ray_version()
    docs = render(name)
    for spec in (s for doc in docs for s in ray_cluster_specs(doc)):
        assert spec["rayVersion"] == version
    images = {c["image"] for _, c, _ in _all_containers(docs)}
    assert images, "no images found"
    for image in images:
        repo, _, tag = image.rpartition(":")
        assert repo.rsplit("/", 1)[-1] == IMAGE and tag.startswith(f"{version}-py311-"), image


@pytest.mark.parametrize("name", WORKLOADS)
def test_images_are_pinned_to_a_revision_and_pulled_if_not_present(name: str) -> None:
    docs = render(name)
    assert image_problems(docs, FLAVORS[name]) == []
    assert image_problems(results_reader(), FLAVORS[name]) == []
    # The overlay's `images: newTag` is what a user edits; it must reach every pod, KubeRay's sidecars too.
    if name != "base":
        kustomization = yaml.safe_load((KUSTOMIZATIONS[name] / "kustomization.yaml").read_text())
        [entry] = [i for i in kustomization["images"] if i["name"] == IMAGE]
        assert {split_image(c["image"])[1] for _, c, _ in _all_containers(docs)} == {entry["newTag"]}


def test_dockerfile_pins_ray_and_runs_as_non_root() -> None:
    text = (K8S / "Dockerfile").read_text()
    assert re.search(r"^ARG RAY_VERSION=(\S+)$", text, re.M)[1] == pyproject_ray_version()
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311-", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # The revision is a build argument recorded as the OCI label, declared after the last RUN so a new
    # revision reuses the dependency layers.
    assert re.search(r"^ARG GIT_REVISION(=\S*)?$", text, re.M)
    assert re.search(r'org\.opencontainers\.image\.revision="\$\{GIT_REVISION\}"', text)
    assert text.index("ARG GIT_REVISION") > text.rindex("\nRUN ")


def test_network_policy_denies_by_default_and_admits_only_pods() -> None:
    policies = [d for d in render("base") if d["kind"] == "NetworkPolicy"]
    assert any(
        p["spec"]["podSelector"] == {} and "Ingress" in p["spec"]["policyTypes"] and not p["spec"].get("ingress")
        for p in policies
    ), "no default-deny ingress policy"
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{policy['metadata']['name']}: a rule without `from` admits everyone"
            assert all("ipBlock" not in peer for peer in rule["from"])


@pytest.mark.parametrize("name", WORKLOADS)
def test_no_pod_can_reach_the_cloud_metadata_address(name: str) -> None:
    docs = render(name) + results_reader()
    assert metadata_egress_problems(docs) == []
    # ...while DNS, Ray traffic and the internet stay reachable from every pod.
    policy = next(d for d in docs if d["metadata"]["name"] == "egress-except-cloud-metadata")
    assert policy["spec"]["podSelector"] == {}
    [rule] = policy["spec"]["egress"]
    assert "ports" not in rule and {"namespaceSelector": {}} in rule["to"]
    assert {str(ipaddress.ip_network(p["ipBlock"]["cidr"])) for p in rule["to"] if "ipBlock" in p} == {
        "0.0.0.0/0",
        "::/0",
    }


@pytest.mark.parametrize("name", WORKLOADS)
def test_root_filesystems_are_read_only_with_writable_tmp_and_caches(name: str) -> None:
    docs = render(name) + results_reader()
    assert read_only_root_problems(docs) == []
    for pod in (p for doc in docs for p in pod_templates(doc) if p.role in ("head", "worker")):
        spec = as_created(pod)
        ray = spec["containers"][0]
        # The Ray container writes its session, shared memory, caches and results; the experiments volume
        # stays where it was.
        assert {"/tmp", "/dev/shm", "/home/ray/.cache", MOUNT} <= set(writable_paths(ray, spec)), pod.where
        if pod.role == "head":
            # The session directory /tmp/ray is KubeRay's ray-logs emptyDir, shared with the autoscaler.
            autoscaler = spec["containers"][1]
            for container in (ray, autoscaler):
                assert {"/tmp", "/tmp/ray"} <= set(writable_paths(container, spec))
                assert {"name": "ray-logs", "mountPath": "/tmp/ray"} in container["volumeMounts"]


@pytest.mark.parametrize("name", WORKLOADS)
def test_only_the_head_holds_api_rights_and_they_are_kuberays_autoscaler_role(name: str) -> None:
    docs = render(name) + render("storage") + results_reader()
    assert rbac_problems(docs) == []
    # The head's rights are exactly KubeRay's autoscaler Role (which the operator binds to it anyway).
    [role] = [d for d in docs if d["kind"] == "Role"]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == KUBERAY_AUTOSCALER_RULES
    [binding] = [d for d in docs if d["kind"] == "RoleBinding"]
    heads = [as_created(p) for d in docs for p in pod_templates(d) if p.role == "head"]
    assert len(heads) == 2 and {h["serviceAccountName"] for h in heads} == {"ray-head"}
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ray-head", "namespace": NAMESPACE}]
    # The head mounts its token: without it the autoscaler cannot scale.
    assert all(h.get("automountServiceAccountToken", True) for h in heads)


def test_results_reader_pod_is_valid_restricted_and_read_only() -> None:
    docs = results_reader()
    assert [e for doc in docs for e in schema_errors(doc)] == []
    assert restricted_problems(docs) == []
    pod = one(docs, "Pod")
    assert pod["metadata"]["namespace"] == NAMESPACE
    claim = one(render("storage"), "PersistentVolumeClaim")["metadata"]["name"]
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    assert pod["spec"]["containers"][0]["volumeMounts"][0] == {
        "name": pod["spec"]["volumes"][0]["name"],
        "mountPath": MOUNT,
        "readOnly": True,
    }


# ---------------------------------------------------------------- the checks are not vacuous


def test_kubernetes_validator_rejects_unknown_fields() -> None:
    deployment = one(render("base"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    assert schema_errors(deployment)


def test_crd_validator_rejects_unknown_fields(kuberay_crds: Path) -> None:
    docs = render("base")
    job = one(docs, "RayJob")
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "x"
    job["spec"]["backofLimit"] = 3
    errors = schema_errors(job)
    assert any("imagePullPolcy" in e for e in errors) and any("backofLimit" in e for e in errors)
    cluster = one(docs, "RayCluster")
    cluster["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "many"
    assert schema_errors(cluster)


def test_missing_crds_skip_locally_but_fail_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = tmp_path / "no-crds"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not found in .*no-crds"):
        kuberay_crd_dir(absent)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        kuberay_crd_dir(absent)
    # Present CRDs are used either way.
    for name in CRD_FILES.values():
        (tmp_path / name).write_text("{}")
    assert kuberay_crd_dir(tmp_path) == tmp_path


def test_invariants_reject_exposed_or_unrestricted_manifests() -> None:
    docs = render("base")
    service = one(docs, "Service")
    service["spec"]["type"] = "NodePort"
    one(docs, "RayCluster")["spec"]["headGroupSpec"]["serviceType"] = "LoadBalancer"
    assert len(public_service_problems(docs)) == 2
    docs = render("base")
    head = one(docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    del head["securityContext"]["capabilities"]
    del head["resources"]["limits"]
    problems = restricted_problems(docs)
    assert any("capabilities" in p for p in problems) and any("limits" in p for p in problems)
    docs = render("base")
    one(docs, "RayJob")["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["volumes"] = []
    assert storage_problems(docs, "experiments")
    assert fit_problems({"cpu": 1, "gpu": 2}, one(docs, "RayCluster")["spec"])


def test_metadata_invariant_catches_a_policy_without_the_block() -> None:
    docs = render("base") + results_reader()
    pods = sum(1 for doc in docs for _ in pod_templates(doc))
    assert pods == 9  # head and two worker groups, twice; the submitter; TensorBoard; results-reader
    block = next(d for d in docs if d["metadata"]["name"] == "egress-except-cloud-metadata")
    # The same policy without the exceptions: every pod reaches both addresses.
    for peer in block["spec"]["egress"][0]["to"]:
        peer.get("ipBlock", {}).pop("except", None)
    assert len(metadata_egress_problems(docs)) == 2 * pods
    # No egress policy at all: egress is unrestricted.
    docs.remove(block)
    problems = metadata_egress_problems(docs)
    assert len(problems) == pods and all("no egress NetworkPolicy" in p for p in problems)
    # The block in place, but another policy opens all egress for the Ray heads: policies add up.
    docs = render("base") + results_reader()
    opener = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "head-egress", "namespace": NAMESPACE},
        "spec": {"podSelector": {"matchLabels": {"ray.io/node-type": "head"}}, "egress": [{}]},
    }
    problems = metadata_egress_problems([*docs, opener])
    assert len(problems) == 2 * 2 and all("head" in p and "head-egress" in p for p in problems)


def test_image_invariant_rejects_floating_tags_and_mixed_revisions() -> None:
    assert split_image("registry:5000/team/parallel-orchestrator") == (
        "registry:5000/team/parallel-orchestrator",
        "",
        "",
    )
    assert split_image("busybox@sha256:abc") == ("busybox", "", "sha256:abc")
    docs = render("gpu")
    spec = one(docs, "RayCluster")["spec"]
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["image"] = "registry.example.com/parallel-orchestrator:latest"
    spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["image"] = f"{IMAGE}:2.60.0-py311-gpu"
    spec["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    tensorboard = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    tensorboard["image"] = tensorboard["image"].replace("0000000", "abcdef1")
    problems = image_problems(docs, "gpu")
    # :latest on the head and its autoscaler sidecar; no revision on a worker and its init container.
    assert sum("not pinned" in p for p in problems) == 2
    assert sum("not tagged" in p for p in problems) == 4
    assert sum("not IfNotPresent" in p for p in problems) == 2  # worker and its wait-gcs-ready copy
    assert any("different revisions" in p for p in problems)
    assert image_problems(render("gpu"), "cpu")  # a GPU image where the CPU flavor belongs
    reader = results_reader()
    one(reader, "Pod")["spec"]["containers"][0]["image"] = "busybox"
    assert len(image_problems(reader, "gpu")) == 1


def test_read_only_invariant_catches_writable_roots_and_missing_tmp() -> None:
    docs = render("cpu-only")
    spec = one(docs, "RayCluster")["spec"]
    del spec["autoscalerOptions"]["securityContext"]["readOnlyRootFilesystem"]
    worker = spec["workerGroupSpecs"][0]["template"]["spec"]
    worker["containers"][0]["volumeMounts"] = [m for m in worker["containers"][0]["volumeMounts"] if m["name"] != "tmp"]
    worker["containers"][0]["env"] = [e for e in worker["containers"][0]["env"] if e["name"] != "MPLCONFIGDIR"]
    head = spec["headGroupSpec"]["template"]["spec"]
    next(m for m in head["containers"][0]["volumeMounts"] if m["name"] == "cache")["readOnly"] = True
    problems = read_only_root_problems(docs)
    assert [p for p in problems if "readOnlyRootFilesystem" in p] == [
        "RayCluster/interactive head autoscaler: readOnlyRootFilesystem must be true"
    ]
    # The worker and its wait-gcs-ready copy lose /tmp; only the Ray container itself needs the cache variables.
    assert sum("/tmp must be" in p for p in problems) == 2
    assert sum("MPLCONFIGDIR is not set" in p for p in problems) == 1
    assert sum("is not on a writable mount" in p for p in problems) == len(CACHE_ENV)
    # A /tmp from a ConfigMap is mounted but not writable.
    reader = results_reader()
    one(reader, "Pod")["spec"]["volumes"][1] = {"name": "tmp", "configMap": {"name": "x"}}
    assert read_only_root_problems(reader) == ["Pod/results-reader reader: /tmp must be a writable emptyDir mount"]


def test_rbac_invariant_rejects_cluster_roles_wildcards_and_stray_tokens() -> None:
    docs = render("base") + render("storage") + results_reader()
    role = one(docs, "Role")
    role["rules"][0]["verbs"].append("delete")
    role["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]})
    docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"}})
    binding = one(docs, "RoleBinding")
    binding["subjects"].append({"kind": "ServiceAccount", "name": "no-api-access", "namespace": NAMESPACE})
    one(docs, "Deployment")["spec"]["template"]["spec"]["automountServiceAccountToken"] = True
    # A worker without serviceAccountName runs as `default`, whose token is mounted unless the pod says no.
    worker = one(docs, "RayJob")["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    del worker["serviceAccountName"], worker["automountServiceAccountToken"]
    problems = rbac_problems(docs)
    assert any("ClusterRole/x" in p for p in problems)
    assert any("'delete'" in p and "pods" in p for p in problems)
    assert any("wildcards" in p for p in problems) and any("core/secrets" in p for p in problems)
    assert any("binds ServiceAccount/no-api-access" in p for p in problems)
    assert any(p.startswith("Deployment/tensorboard: mounts an API token") for p in problems)
    assert any(p.startswith("RayJob/sweep gpu: mounts an API token") for p in problems)
    assert any(p.startswith("RayJob/sweep gpu: runs as default") for p in problems)
    assert len(problems) == 8, problems
    # A projected API token is a token too; one for a cloud's audience is not.
    docs = render("base") + render("storage") + results_reader()
    reader = one(docs, "Pod")["spec"]
    token = {"serviceAccountToken": {"path": "token"}}
    reader["volumes"].append({"name": "token", "projected": {"sources": [token]}})
    assert rbac_problems(docs) == ["Pod/results-reader: mounts an API token; only the Ray head may"]
    token["serviceAccountToken"]["audience"] = "sts.amazonaws.com"
    assert rbac_problems(docs) == []
    # Binding a ClusterRole, even from a RoleBinding, is refused too.
    docs = render("base") + render("storage") + results_reader()
    one(docs, "RoleBinding")["roleRef"]["kind"] = "ClusterRole"
    assert rbac_problems(docs) == ["RoleBinding/ray-autoscaler: binds a ClusterRole; only namespaced Roles are allowed"]
