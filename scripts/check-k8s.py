#!/usr/bin/env python3
"""The project's own checks of the Kubernetes manifests and the ghz payloads, run by
scripts/check-k8s.sh inside its tool venv (PyYAML, grpcio, grpcio-tools, protobuf) after the
generic ones (kubernetes-validate, checkov). Generic tools cannot know that tactful drains for
TACTFUL_DRAIN_GRACE_S, that its memory cap must sit below the container's limit, or that the
readiness probe names a service tactful actually reports; this script does. It checks:

1. each overlay's tactful container: the fixed environment (listen on 0.0.0.0:50051 for the
   kubelet's probes, admin on 9464, config, data dir, json logs), gRPC startup/readiness/liveness
   probes on 50051 with readiness on tactful.v1.Ranker, the hardened securityContext, a pinned
   image, the memory cap below the memory limit, the termination grace above preStop + drain,
   the config file on a ConfigMap volume and the data dir on a writable volume, the Prometheus
   annotations pointing at the admin port;
2. the sidecar is a native one (an init container with restartPolicy Always) and has no
   Service; the standalone service's Service, HPA, PDB and NetworkPolicy point at its pods and
   ports; both overlays run the same tactful container (image, env, probes, security);
3. the Istio DestinationRule uses only fields of the Istio API, targets the service overlay's
   Service in its namespace and hashes on x-user-id;
4. the real binary starts on the rendered ConfigMap with the pod's environment (and on the
   commented example policy with its comment marks removed, which must then be in effect),
   reports SERVING under the service names the probes ask for, and stops cleanly on SIGTERM;
5. the ghz configs call methods that exist, through reflection, on loopback with bounded runs;
   their payloads are what make-payloads.py generates, parse into the request messages with
   the real protos, and are accepted by that running server (Rank not degraded, every event
   applied).

Usage: check-k8s.py RENDERED_DIR TACTFUL_BIN
(RENDERED_DIR holds sidecar.yaml, service.yaml and istio.yaml from kubectl kustomize.)
Prints nothing on success; on failure, one line per problem and exit status 1.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
GHZ = ROOT / "benches" / "ghz"
PROBLEMS = []


def problem(where, message):
    PROBLEMS.append(f"{where}: {message}")


def load(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def mib(quantity):
    """Kubernetes memory quantity -> MiB."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|K|M|G)?", str(quantity))
    if not m:
        raise ValueError(f"unsupported memory quantity {quantity!r}")
    n, unit = int(m.group(1)), m.group(2) or ""
    factor = {"": 1 / 2**20, "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20,
              "M": 1e6 / 2**20, "G": 1e9 / 2**20}[unit]
    return n * factor


# ---------------------------------------------------------------------------------------------
# 1, 2: the tactful container and the resources around it

REQUIRED_ENV = {
    "TACTFUL_LISTEN": "0.0.0.0:50051",
    "TACTFUL_ADMIN_LISTEN": "0.0.0.0:9464",
    "TACTFUL_LOG_FORMAT": "json",
}
REQUIRED_ENV_NAMES = [
    "TACTFUL_CONFIG",
    "TACTFUL_DATA_DIR",
    "TACTFUL_KEY_DIR",
    "TACTFUL_MASTER_KEY_FILE",
    "TACTFUL_DRAIN_GRACE_S",
    "TACTFUL_MEMORY_CAP_MIB",
]
SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def tactful_container(deployment, where):
    spec = deployment["spec"]["template"]["spec"]
    found = [("containers", c) for c in spec.get("containers", []) if c["name"] == "tactful"]
    found += [("initContainers", c) for c in spec.get("initContainers", []) if c["name"] == "tactful"]
    if len(found) != 1:
        problem(where, f"expected one container named tactful, found {len(found)}")
        return None, None
    return found[0]


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def check_container(docs, deployment, where):
    spec = deployment["spec"]["template"]["spec"]
    place, c = tactful_container(deployment, where)
    if c is None:
        return None
    env = env_of(c)
    for name, value in REQUIRED_ENV.items():
        if env.get(name) != value:
            problem(where, f"{name} is {env.get(name)!r}, expected {value!r}")
    for name in REQUIRED_ENV_NAMES:
        if not env.get(name):
            problem(where, f"{name} is not set")

    image = c.get("image", "")
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    if not tag or tag == "latest":
        problem(where, f"image {image!r} is not pinned to a release tag")
    if "imagePullPolicy" not in c:
        problem(where, "imagePullPolicy is not set")

    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports != {"grpc": 50051, "admin": 9464}:
        problem(where, f"ports are {ports}, expected grpc 50051 and admin 9464")

    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = c.get(probe)
        if not p or "grpc" not in p or p["grpc"].get("port") != 50051:
            problem(where, f"{probe} is not a gRPC probe on port 50051")
    ready = c.get("readinessProbe", {}).get("grpc", {}).get("service")
    if ready != "tactful.v1.Ranker":
        problem(where, f"readinessProbe asks for service {ready!r}, expected 'tactful.v1.Ranker'")

    sc = c.get("securityContext", {})
    for key, value in SECURITY.items():
        if sc.get(key) != value:
            problem(where, f"securityContext.{key} is {sc.get(key)!r}, expected {value!r}")

    limits = c.get("resources", {}).get("limits", {})
    requests = c.get("resources", {}).get("requests", {})
    for res in ("cpu", "memory"):
        if res not in limits or res not in requests:
            problem(where, f"resources lack a {res} request or limit")
    if "memory" in limits and env.get("TACTFUL_MEMORY_CAP_MIB"):
        cap, limit = int(env["TACTFUL_MEMORY_CAP_MIB"]), mib(limits["memory"])
        # Peak RSS was measured at cap + 16%; the process itself needs ~100 MiB besides.
        if cap * 1.16 + 100 > limit:
            problem(where, f"TACTFUL_MEMORY_CAP_MIB {cap} leaves too little of the "
                           f"{limits['memory']} limit (need cap x 1.16 + 100 MiB)")

    grace = spec.get("terminationGracePeriodSeconds", 30)
    drain = int(env.get("TACTFUL_DRAIN_GRACE_S") or 10)
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    if grace <= pre_stop + drain:
        problem(where, f"terminationGracePeriodSeconds {grace} is not above preStop {pre_stop} s"
                       f" + TACTFUL_DRAIN_GRACE_S {drain} s")

    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    config = env.get("TACTFUL_CONFIG", "")
    config_dir, config_key = os.path.split(config)
    m = mounts.get(config_dir)
    cm_name = volumes.get(m["name"], {}).get("configMap", {}).get("name") if m else None
    cms = find(docs, "ConfigMap", cm_name) if cm_name else []
    if not cms or config_key not in cms[0].get("data", {}):
        problem(where, f"TACTFUL_CONFIG {config!r} is not a key of a ConfigMap mounted at {config_dir}")
    data = mounts.get(env.get("TACTFUL_DATA_DIR"))
    if not data or data.get("readOnly"):
        problem(where, f"TACTFUL_DATA_DIR {env.get('TACTFUL_DATA_DIR')!r} is not a writable mount")
    keys = mounts.get(env.get("TACTFUL_KEY_DIR"))
    if not keys or keys.get("readOnly") or (data and keys["name"] == data["name"]):
        problem(where, f"TACTFUL_KEY_DIR {env.get('TACTFUL_KEY_DIR')!r} is not a writable mount "
                       "of its own, apart from the data")
    master_dir = os.path.dirname(env.get("TACTFUL_MASTER_KEY_FILE") or "")
    m = mounts.get(master_dir)
    if not m or not m.get("readOnly") or "secret" not in volumes.get(m["name"], {}):
        problem(where, f"TACTFUL_MASTER_KEY_FILE is not on a read-only Secret mount ({master_dir!r})")

    pod_sc = spec.get("securityContext", {})
    if pod_sc.get("runAsNonRoot") is not True or pod_sc.get("seccompProfile") != {"type": "RuntimeDefault"}:
        problem(where, "the pod securityContext lacks runAsNonRoot or the RuntimeDefault seccomp profile")
    if spec.get("automountServiceAccountToken") is not False:
        problem(where, "the pod mounts a service account token")

    ann = deployment["spec"]["template"]["metadata"].get("annotations", {})
    want = {"prometheus.io/scrape": "true", "prometheus.io/port": "9464", "prometheus.io/path": "/metrics"}
    for key, value in want.items():
        if ann.get(key) != value:
            problem(where, f"pod annotation {key} is {ann.get(key)!r}, expected {value!r}")
    return place, c, cms[0] if cms else None


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def check_sidecar(docs):
    where = "overlays/sidecar"
    deployments = find(docs, "Deployment")
    if len(deployments) != 1:
        problem(where, f"expected one Deployment, found {len(deployments)}")
        return None
    result = check_container(docs, deployments[0], where)
    if result and result[0] != "initContainers":
        problem(where, "tactful is not an init container (a native sidecar)")
    if result and result[1].get("restartPolicy") != "Always":
        problem(where, "the tactful init container lacks restartPolicy: Always")
    if find(docs, "Service", "tactful"):
        problem(where, "a Service exposes the sidecar; it should be reached on localhost only")
    return result


def check_service(docs):
    where = "overlays/service"
    deployments = find(docs, "Deployment", "tactful")
    if len(deployments) != 1:
        problem(where, "expected one Deployment named tactful")
        return None
    d = deployments[0]
    result = check_container(docs, d, where)
    if result and result[0] != "containers":
        problem(where, "tactful is not a regular container")
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    spec = d["spec"]["template"]["spec"]
    if "replicas" in d["spec"]:
        problem(where, "the Deployment sets replicas, which would fight the HorizontalPodAutoscaler")
    if not spec.get("topologySpreadConstraints"):
        problem(where, "no topologySpreadConstraints")

    services = find(docs, "Service", "tactful")
    if len(services) != 1:
        problem(where, "expected the tactful Service")
    else:
        s = services[0]["spec"]
        if not labels_match({"matchLabels": s.get("selector", {})}, pod_labels):
            problem(where, "the Service does not select the tactful pods")
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in s["ports"]}
        if ports != {"grpc": (50051, "grpc"), "admin": (9464, "admin")}:
            problem(where, f"Service ports are {ports}")

    hpas = find(docs, "HorizontalPodAutoscaler")
    if len(hpas) != 1 or hpas[0]["apiVersion"] != "autoscaling/v2":
        problem(where, "expected one autoscaling/v2 HorizontalPodAutoscaler")
    else:
        h = hpas[0]["spec"]
        if h["scaleTargetRef"] != {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tactful"}:
            problem(where, "the HorizontalPodAutoscaler does not target the tactful Deployment")
        if not any(m.get("resource", {}).get("name") == "cpu" for m in h.get("metrics", [])):
            problem(where, "the HorizontalPodAutoscaler does not scale on CPU")
        if h.get("minReplicas", 1) < 2:
            problem(where, "minReplicas below 2 leaves no replica during a disruption")

    pdbs = find(docs, "PodDisruptionBudget")
    if len(pdbs) != 1 or not labels_match(pdbs[0]["spec"]["selector"], pod_labels):
        problem(where, "expected one PodDisruptionBudget selecting the tactful pods")

    policies = [p for p in find(docs, "NetworkPolicy") if labels_match(p["spec"]["podSelector"], pod_labels)]
    if len(policies) != 1:
        problem(where, "expected one NetworkPolicy selecting the tactful pods")
    else:
        p = policies[0]["spec"]
        if sorted(p.get("policyTypes", [])) != ["Egress", "Ingress"]:
            problem(where, "the NetworkPolicy must restrict both ingress and egress")
        ingress_ports = sorted(port["port"] for rule in p.get("ingress", []) for port in rule.get("ports", []))
        if ingress_ports != [9464, 50051]:
            problem(where, f"the NetworkPolicy admits ports {ingress_ports}, expected 9464 and 50051")
        egress_ports = {port["port"] for rule in p.get("egress", []) for port in rule.get("ports", [])}
        if 53 not in egress_ports:
            problem(where, "the NetworkPolicy does not allow DNS")
    return result


def check_same_tactful(sidecar, service):
    """Both overlays must run the same tactful: only resources and volume names may differ."""
    a, b = sidecar[1], service[1]
    for key in ("image", "imagePullPolicy", "env", "ports", "startupProbe", "readinessProbe",
                "livenessProbe", "securityContext"):
        if a.get(key) != b.get(key):
            problem("overlays", f"the sidecar's and the service's tactful differ in {key}")
    paths = lambda c: sorted((m["mountPath"], bool(m.get("readOnly"))) for m in c.get("volumeMounts", []))
    if paths(a) != paths(b):
        problem("overlays", "the sidecar's and the service's tactful mount different paths")


# ---------------------------------------------------------------------------------------------
# 3: the Istio DestinationRule, against the fields of the Istio API it may use

LB_FIELDS = {
    "simple": str,
    "consistentHash": {
        "httpHeaderName": str,
        "httpCookie": {"name": str, "path": str, "ttl": str},
        "useSourceIp": bool,
        "httpQueryParameterName": str,
        "ringHash": {"minimumRingSize": int},
        "maglev": {"tableSize": int},
    },
    "localityLbSetting": dict,
    "warmup": dict,
}
DR_SPEC = {
    "host": str,
    "exportTo": list,
    "subsets": list,
    "workloadSelector": dict,
    "trafficPolicy": {
        "loadBalancer": LB_FIELDS,
        "connectionPool": dict,
        "outlierDetection": dict,
        "tls": dict,
        "portLevelSettings": list,
        "tunnel": dict,
        "proxyProtocol": dict,
    },
}


def check_shape(value, shape, path):
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            problem("istio", f"{path} is not an object")
            return
        for key, sub in value.items():
            if key not in shape:
                problem("istio", f"{path}.{key} is not a DestinationRule field")
            else:
                check_shape(sub, shape[key], f"{path}.{key}")
    elif not isinstance(value, shape):
        problem("istio", f"{path} should be of type {shape.__name__}")


def check_istio(docs, service_docs):
    rules = find(docs, "DestinationRule")
    if len(docs) != 1 or len(rules) != 1:
        problem("istio", "expected exactly one DestinationRule")
        return
    r = rules[0]
    if r["apiVersion"] not in ("networking.istio.io/v1", "networking.istio.io/v1beta1"):
        problem("istio", f"apiVersion {r['apiVersion']} is not a served Istio networking version")
    if set(r) - {"apiVersion", "kind", "metadata", "spec"}:
        problem("istio", f"unexpected top-level keys {sorted(set(r) - {'apiVersion', 'kind', 'metadata', 'spec'})}")
    check_shape(r["spec"], DR_SPEC, "spec")
    services = find(service_docs, "Service")
    svc = services[0]["metadata"] if services else {}
    host = r["spec"].get("host", "")
    short = host.split(".")[0]
    if short != svc.get("name") or (("." in host) and host.split(".")[1] != svc.get("namespace")):
        problem("istio", f"host {host!r} is not the service overlay's Service {svc.get('name')!r}")
    if r["metadata"].get("namespace") != svc.get("namespace"):
        problem("istio", "the DestinationRule is not in the service overlay's namespace")
    header = r["spec"].get("trafficPolicy", {}).get("loadBalancer", {}).get("consistentHash", {}).get("httpHeaderName")
    if header != "x-user-id":
        problem("istio", f"consistent hashing is on {header!r}, expected the x-user-id header")


# ---------------------------------------------------------------------------------------------
# 4, 5: the real binary on the shipped config, and the ghz payloads against it

def compile_protos(out):
    from grpc_tools import protoc
    import grpc_tools

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    out.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    args = ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}",
            f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        problem("protos", "grpc_tools.protoc could not compile proto/")
        return False
    sys.path.insert(0, str(out))
    return True


def uncomment_example(toml_text):
    """The commented example policy, with the comment marks of its TOML lines removed."""
    out, inside, toml_started = [], False, False
    for line in toml_text.splitlines():
        if "example policy (begin)" in line:
            inside = True
        elif "example policy (end)" in line:
            inside = False
        elif inside and (toml_started or line.startswith("# [")):
            toml_started = True
            line = line[2:] if line.startswith("# ") else line.lstrip("#")
        out.append(line)
    if not toml_started:
        problem("config", "the ConfigMap has no commented example policy between its markers")
    return "\n".join(out) + "\n"


def master_key(scratch):
    """A master key for the loopback servers, as the pod's Secret would hold one."""
    path = scratch / "master.key"
    if not path.exists():
        path.write_text(os.urandom(32).hex())
    return path


class Server:
    """The real binary, with a pod's environment moved onto loopback and a scratch directory."""

    def __init__(self, binary, pod_env, config_text, scratch, label):
        self.label = label
        config = scratch / f"{label}.toml"
        config.write_text(config_text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TACTFUL_")}
        env.update({k: v for k, v in pod_env.items() if v is not None})
        env.update({
            "TACTFUL_CONFIG": str(config),
            "TACTFUL_LISTEN": "127.0.0.1:0",
            "TACTFUL_ADMIN_LISTEN": "127.0.0.1:0",
            "TACTFUL_DATA_DIR": str(scratch / f"{label}-data"),
            "TACTFUL_KEY_DIR": str(scratch / f"{label}-keys"),
            "TACTFUL_MASTER_KEY_FILE": str(master_key(scratch)),
        })
        self.log = (scratch / f"{label}.log").open("w+")
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addr = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            self.log.seek(0)
            m = re.search(r"listening on (\d+\.\d+\.\d+\.\d+:\d+)", self.log.read())
            if m:
                self.addr = m.group(1)
                return
            time.sleep(0.05)
        self.log.seek(0)
        tail = self.log.read()[-2000:]
        problem(f"config ({label})", f"tactful did not start (exit {self.proc.poll()}):\n{tail}")
        self.stop()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problem(f"config ({self.label})", "tactful did not stop within 30 s of SIGTERM")
                return
            if code != 0 and self.addr:
                problem(f"config ({self.label})", f"tactful exited {code} after SIGTERM")
        self.log.close()


def health(channel, service):
    """grpc.health.v1.Health/Check, encoded by hand: field 1 of both messages."""
    raw = service.encode()
    call = channel.unary_unary("/grpc.health.v1.Health/Check",
                               request_serializer=lambda s: s,
                               response_deserializer=lambda b: b)
    reply = call(b"\x0a" + bytes([len(raw)]) + raw if raw else b"", timeout=5)
    return {b"": "UNKNOWN", b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING"}.get(reply, repr(reply))


def check_ghz_configs(pb):
    """Each ghz config: a method that exists, reflection, loopback, bounded, a payload that
    parses into the method's input message. Returns [(config name, method, request)]."""
    from google.protobuf import json_format

    calls = []
    configs = sorted(p for p in GHZ.glob("*.json"))
    if len(configs) < 3:
        problem("ghz", f"expected at least three configs in {GHZ}, found {len(configs)}")
    for path in configs:
        where = f"ghz/{path.name}"
        cfg = json.loads(path.read_text())
        for key in ("proto", "protoset", "import-paths"):
            if key in cfg:
                problem(where, f"uses {key}; the configs rely on server reflection")
        if cfg.get("host") != "127.0.0.1:50051" or cfg.get("insecure") is not True:
            problem(where, "must target 127.0.0.1:50051 with insecure: true")
        if not (0 < cfg.get("total", 0) <= 100_000) or not (0 < cfg.get("concurrency", 0) <= 64):
            problem(where, "total and concurrency must be set and bounded")
        for key in ("duration", "max-duration"):
            if key in cfg:
                # In ghz 0.120 either one overrides total: a run then lasts the whole duration.
                problem(where, f"{key} makes ghz ignore total; bound runs with total and timeout")
        service_name, _, method_name = cfg.get("call", "").rpartition(".")
        service = pb["pool"].FindServiceByName(service_name) if service_name else None
        method = service.methods_by_name.get(method_name) if service else None
        if method is None:
            problem(where, f"call {cfg.get('call')!r} is not a method of proto/")
            continue
        data = GHZ / cfg.get("data-file", "")
        if not data.is_file():
            problem(where, f"data-file {cfg.get('data-file')!r} does not exist")
            continue
        message = pb["factory"](method.input_type)()
        try:
            json_format.Parse(data.read_text(), message)
        except json_format.ParseError as e:
            problem(where, f"{data.name} does not parse into {method.input_type.full_name}: {e}")
            continue
        calls.append((path.stem, cfg, method, message))
    return calls


def run_checks(rendered, binary):
    sidecar_docs = load(rendered / "sidecar.yaml")
    service_docs = load(rendered / "service.yaml")
    istio_docs = load(rendered / "istio.yaml")
    sidecar = check_sidecar(sidecar_docs)
    service = check_service(service_docs)
    if sidecar and service:
        check_same_tactful(sidecar, service)
        if sidecar[2] and service[2] and sidecar[2].get("data") != service[2].get("data"):
            problem("overlays", "the sidecar and the service ship different ConfigMaps")
    check_istio(istio_docs, service_docs)
    if not service or not service[2]:
        return

    # Payloads: committed files must be exactly what the generator makes.
    with tempfile.TemporaryDirectory(prefix="tactful-check-") as tmp:
        scratch = Path(tmp)
        subprocess.run([sys.executable, str(GHZ / "make-payloads.py"), str(scratch / "payloads")],
                       check=True)
        for fresh in sorted((scratch / "payloads").iterdir()):
            committed = GHZ / "data" / fresh.name
            if not committed.is_file() or committed.read_bytes() != fresh.read_bytes():
                problem("ghz", f"data/{fresh.name} differs from what make-payloads.py generates; rerun it")

        if not compile_protos(scratch / "py"):
            return
        import grpc
        from google.protobuf import descriptor_pool, message_factory
        import tactful.v1.ranker_pb2  # noqa: F401  (registers the files in the default pool)
        import tactful.v1.events_pb2  # noqa: F401
        import tactful.v1.profile_pb2  # noqa: F401

        pool = descriptor_pool.Default()
        pb = {"pool": pool, "factory": message_factory.GetMessageClass}
        calls = check_ghz_configs(pb)

        container, configmap = service[1], service[2]
        pod_env = env_of(container)
        toml_key = os.path.basename(pod_env["TACTFUL_CONFIG"])
        shipped = configmap["data"][toml_key]
        probes = {container[p]["grpc"].get("service", "") for p in
                  ("startupProbe", "readinessProbe", "livenessProbe")}

        server = Server(binary, pod_env, shipped, scratch, "configmap")
        if server.addr:
            with grpc.insecure_channel(server.addr) as channel:
                for name in sorted(probes):
                    try:
                        status = health(channel, name)
                    except grpc.RpcError as e:
                        status = f"{e.code().name} ({e.details()})"
                    if status != "SERVING":
                        problem("probes", f"tactful reports {status} for service {name!r} a probe asks for")
                for name, cfg, method, request in calls:
                    path = f"/{method.containing_service.full_name}/{method.name}"
                    response_class = pb["factory"](method.output_type)
                    call = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                               response_deserializer=response_class.FromString)
                    try:
                        reply = call(request, timeout=10, metadata=list(cfg.get("metadata", {}).items()))
                    except grpc.RpcError as e:
                        problem(f"ghz/{name}.json", f"the server refused the payload: {e.code()} {e.details()}")
                        continue
                    if method.name == "Rank":
                        if reply.degraded or len(reply.items) != request.k:
                            problem(f"ghz/{name}.json", f"Rank answered degraded={reply.degraded} "
                                                        f"with {len(reply.items)} items")
                        want = request.policy or "default"
                        if not reply.policy_version.startswith(want + "@"):
                            problem(f"ghz/{name}.json", f"ran policy {reply.policy_version}, not {want}")
                    if method.name == "Record" and (reply.rejected_total or reply.applied != len(request.events)):
                        problem(f"ghz/{name}.json", f"Record applied {reply.applied}, rejected "
                                                    f"{reply.rejected_total}: {list(reply.rejected)[:3]}")
        server.stop()

        # The commented example must load too, and take effect.
        example = Server(binary, pod_env, uncomment_example(shipped), scratch, "example policy")
        if example.addr:
            with grpc.insecure_channel(example.addr) as channel:
                rank = [c for c in calls if c[2].name == "Rank" and not c[3].policy]
                if rank:
                    name, cfg, method, request = rank[0]
                    stub = channel.unary_unary(
                        f"/{method.containing_service.full_name}/Rank",
                        request_serializer=lambda m: m.SerializeToString(),
                        response_deserializer=pb["factory"](method.output_type).FromString)
                    reply = stub(request, timeout=10)
                    m = re.search(r"^version\s*=\s*(\d+)", uncomment_example(shipped), re.M)
                    if m and reply.policy_version != f"default@{m.group(1)}":
                        problem("config (example policy)", f"ranked with {reply.policy_version}, "
                                                           f"not the example's default@{m.group(1)}")
        example.stop()


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    run_checks(Path(sys.argv[1]), sys.argv[2])
    for p in PROBLEMS:
        print(f"check-k8s: {p}", file=sys.stderr)
    sys.exit(1 if PROBLEMS else 0)


if __name__ == "__main__":
    main()
