"""Static checks of deploy/: the manifests agree with each other and with
deploy/README.md.

Nothing here starts a server, a container or a cluster. The checks are the
cross-references a typo breaks silently: a Service selector that matches no
pod, a probe on the wrong port, a secret mounted under one path and read from
another, a grace period shorter than the server's drain, a README command that
names a file that does not exist.
"""
from __future__ import annotations

import pathlib
import re
import shlex
import subprocess
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
README = DEPLOY / "README.md"

GRPC_PORT = 50051
METRICS_PORT = 9090
IMAGE_UID = 10001
# Manifests under k8s/ that kustomization.yaml must not apply: the example
# Secret holds a placeholder that would overwrite the real token.
NOT_APPLIED = {"secret.example.yaml"}
GPU_BUILD_ARGS = {
    "BUILD_IMAGE": "nvidia/cuda:12.6.3-devel-ubuntu24.04",
    "RUNTIME_IMAGE": "nvidia/cuda:12.6.3-runtime-ubuntu24.04",
    "TENSORD_CUDA": "ON",
}


# ---- loading ---------------------------------------------------------------


def load_documents(path: pathlib.Path) -> list[Any]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def yaml_files() -> list[pathlib.Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def k8s_manifest_files() -> list[pathlib.Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_objects(kind: str) -> list[dict]:
    return [
        doc
        for path in k8s_manifest_files()
        for doc in load_documents(path)
        if isinstance(doc, dict) and doc.get("kind") == kind
    ]


def the_one(kind: str, *, applied_only: bool = True) -> dict:
    files = [p for p in k8s_manifest_files() if not (applied_only and p.name in NOT_APPLIED)]
    found = [d for p in files for d in load_documents(p) if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} under {K8S}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment() -> dict:
    return the_one("Deployment")


@pytest.fixture(scope="module")
def service() -> dict:
    return the_one("Service")


@pytest.fixture(scope="module")
def example_secret() -> dict:
    secrets = [d for d in load_documents(K8S / "secret.example.yaml") if d.get("kind") == "Secret"]
    assert len(secrets) == 1
    return secrets[0]


@pytest.fixture(scope="module")
def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod_spec: dict) -> dict:
    containers = pod_spec["containers"]
    assert [c["name"] for c in containers] == ["tensord"]
    return containers[0]


@pytest.fixture(scope="module")
def compose() -> dict:
    docs = load_documents(COMPOSE_FILE)
    assert len(docs) == 1
    return docs[0]


@pytest.fixture(scope="module")
def readme_commands() -> list[list[str]]:
    return shell_commands(README.read_text())


# ---- parsing helpers -------------------------------------------------------


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of `--flag V` or `--flag=V` in args; the last one wins, as in the server."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
    return value


def address_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def listen_ports(args: list[str], env: dict[str, str]) -> tuple[int, int]:
    """(gRPC port, metrics port) the server will bind, with the server's precedence.

    The image's default CMD passes --listen and --metrics-listen, and a flag
    beats its environment variable, so a manifest that keeps the default CMD
    but sets TENSORD_LISTEN would not get what it says. The manifests therefore
    must pass both flags, and any environment variable must agree with them.
    """
    ports = []
    for flag, env_name in (("--listen", "TENSORD_LISTEN"), ("--metrics-listen", "TENSORD_METRICS_LISTEN")):
        value = flag_value(args, flag)
        assert value is not None, f"{flag} must be given explicitly, got args {args}"
        if env_name in env:
            assert env[env_name] == value, f"{env_name}={env[env_name]} is overridden by {flag} {value}"
        ports.append(address_port(value))
    return ports[0], ports[1]


def parse_byte_size(text: str) -> int:
    """The server's --max-memory syntax (server/common/byte_size.cc): binary K/M/G/T."""
    match = re.fullmatch(r"([0-9.]+)\s*([KMGT]?)(I?B)?", text.strip().upper())
    assert match, f"not a byte size: {text!r}"
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " "))


def parse_k8s_quantity(text: str | int) -> float:
    match = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T|m)?", str(text))
    assert match, f"not a Kubernetes quantity: {text!r}"
    factor = {
        None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    }[match.group(2)]
    return float(match.group(1)) * factor


def parse_compose_bytes(text: str | int) -> int:
    """Docker's memory syntax: b/k/m/g suffixes, binary, case-insensitive."""
    match = re.fullmatch(r"([0-9.]+)\s*([bkmg]?)b?", str(text).strip().lower())
    assert match, f"not a Docker byte size: {text!r}"
    return int(float(match.group(1)) * 1024 ** " kmg".index(match.group(2) or " "))


def parse_duration(text: str) -> float:
    """Compose durations: 40s, 1m30s, 1h, 500ms."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([0-9.]+)(ms|us|ns|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def published_ports(ports: list) -> dict[int, int]:
    """container port -> host port, from compose's short or long syntax."""
    result = {}
    for entry in ports:
        if isinstance(entry, dict):
            result[int(entry["target"])] = int(entry.get("published", entry["target"]))
            continue
        fields = str(entry).split("/")[0].split(":")
        result[int(fields[-1])] = int(fields[-2]) if len(fields) > 1 else int(fields[-1])
    return result


def shell_commands(markdown: str) -> list[list[str]]:
    """Every command in the README's ```sh blocks, split like a shell would."""
    commands = []
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", markdown, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(shlex.split(line))
    return commands


def commands_starting(commands: list[list[str]], *prefix: str) -> list[list[str]]:
    return [c for c in commands if c[: len(prefix)] == list(prefix)]


# ---- every file ------------------------------------------------------------


def test_every_yaml_file_under_deploy_parses() -> None:
    files = yaml_files()
    names = {p.relative_to(DEPLOY).as_posix() for p in files}
    assert {"docker-compose.yml", "k8s/kustomization.yaml", "k8s/deployment.yaml",
            "k8s/service.yaml", "k8s/secret.example.yaml"} <= names
    for path in files:
        docs = load_documents(path)
        assert docs, f"{path} holds no YAML document"
        assert all(isinstance(d, dict) for d in docs), f"{path} has a document that is not a mapping"


def test_every_kubernetes_manifest_has_kind_name_and_recommended_labels() -> None:
    for path in k8s_manifest_files():
        for doc in load_documents(path):
            assert doc.get("apiVersion") and doc.get("kind"), path
            labels = doc["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/name") == "tensord", f"{path}: {labels}"
            assert labels.get("app.kubernetes.io/instance"), f"{path}: {labels}"


# ---- Kubernetes --------------------------------------------------------------


def test_kustomization_lists_exactly_the_manifests_to_apply() -> None:
    (kustomization,) = load_documents(K8S / "kustomization.yaml")
    listed = kustomization.get("resources", [])
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization.yaml lists {name}, which does not exist"
    expected = {p.name for p in k8s_manifest_files()} - NOT_APPLIED
    assert sorted(listed) == sorted(expected)
    assert not NOT_APPLIED & set(listed), "the example Secret would overwrite the real token"


def test_service_selects_the_deployment_pods(deployment: dict, service: dict) -> None:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector, "a Service without a selector gets no endpoints"
    assert selector.items() <= pod_labels.items(), f"{selector} does not match pods {pod_labels}"
    match_labels = deployment["spec"]["selector"]["matchLabels"]
    assert match_labels.items() <= pod_labels.items()
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_service_ports_reach_container_ports(service: dict, container: dict) -> None:
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    numbers = set(by_name.values())
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {"grpc", "metrics"}
    for name, port in ports.items():
        target = port.get("targetPort", port["port"])
        if isinstance(target, str):
            assert target in by_name, f"targetPort {target!r} names no container port {by_name}"
            target = by_name[target]
        assert target in numbers, f"Service port {name} targets {target}, not a container port"
    assert by_name == {"grpc": GRPC_PORT, "metrics": METRICS_PORT}
    assert ports["grpc"]["port"] == GRPC_PORT and ports["grpc"].get("appProtocol") == "grpc"
    assert ports["metrics"]["port"] == METRICS_PORT


def test_container_ports_are_the_ones_the_server_listens_on(container: dict) -> None:
    grpc_port, metrics_port = listen_ports(container.get("args", []), env_of(container))
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert by_name["grpc"] == grpc_port
    assert by_name["metrics"] == metrics_port


def test_probes_are_grpc_health_checks_on_the_grpc_port(container: dict) -> None:
    grpc_port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        assert probe, f"{kind} is missing"
        handlers = {"grpc", "httpGet", "tcpSocket", "exec"} & probe.keys()
        assert handlers == {"grpc"}, f"{kind} uses {handlers}"
        assert probe["grpc"]["port"] == grpc_port == GRPC_PORT
        # The empty service name is the server's overall health, the one that
        # turns NOT_SERVING while draining.
        assert probe["grpc"].get("service", "") == ""


def test_token_secret_is_mounted_where_the_server_reads_it(
    pod_spec: dict, container: dict, example_secret: dict, readme_commands: list[list[str]]
) -> None:
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    secret_volumes = [v for v in volumes.values() if "secret" in v]
    assert len(secret_volumes) == 1
    volume = secret_volumes[0]
    secret_name = volume["secret"]["secretName"]
    assert secret_name == example_secret["metadata"]["name"]

    example_keys = set(example_secret.get("stringData", {})) | set(example_secret.get("data", {}))
    items = volume["secret"].get("items") or [{"key": k, "path": k} for k in example_keys]
    key_paths = {item["key"]: item["path"] for item in items}
    assert set(key_paths) == {"token"} and "token" in example_keys

    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount.get("readOnly") is True
    token_file = env_of(container)["TENSORD_AUTH_TOKEN_FILE"]
    assert token_file == f"{mount['mountPath'].rstrip('/')}/{key_paths['token']}"

    # The README's `kubectl create secret` makes the same Secret with the same key.
    (create,) = commands_starting(readme_commands, "kubectl", "create", "secret", "generic")
    assert create[4] == secret_name
    (from_file,) = [a.split("=", 1)[1] for a in create if a.startswith("--from-file=")]
    key, source = from_file.split("=", 1)
    assert key == "token"
    # ... from the token file the README creates, where git ignores it.
    (openssl,) = [c for c in readme_commands if c[:2] == ["openssl", "rand"]]
    assert source == openssl[-1]


def test_termination_grace_outlasts_the_server_drain(pod_spec: dict, container: dict) -> None:
    shutdown_grace = float(env_of(container)["TENSORD_SHUTDOWN_GRACE"])
    assert pod_spec["terminationGracePeriodSeconds"] > shutdown_grace


def test_one_gpu_in_limits(container: dict) -> None:
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    requests = container["resources"].get("requests", {})
    if "nvidia.com/gpu" in requests:  # extended resources need requests == limits
        assert int(requests["nvidia.com/gpu"]) == 1


def test_tensor_budget_fits_in_the_memory_limit(container: dict) -> None:
    resources = container["resources"]
    for key in ("cpu", "memory"):
        assert key in resources["requests"] and key in resources["limits"]
        assert parse_k8s_quantity(resources["requests"][key]) <= parse_k8s_quantity(resources["limits"][key])
    budget = parse_byte_size(env_of(container)["TENSORD_MAX_MEMORY"])
    assert budget < parse_k8s_quantity(resources["limits"]["memory"])


def test_pod_runs_locked_down_as_the_image_user(pod_spec: dict, container: dict) -> None:
    pod_sc = pod_spec.get("securityContext", {})
    sc = {**pod_sc, **container.get("securityContext", {})}
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == IMAGE_UID
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not sc["capabilities"].get("add")
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"


def test_one_replica_replaced_not_rolled(deployment: dict) -> None:
    # Tensors live in one process; a second pod would not know the sessions.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_data_is_scratch_space(pod_spec: dict, container: dict) -> None:
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/data"]
    assert "emptyDir" in volumes[mount["name"]]
    assert not mount.get("readOnly")


def test_prometheus_annotations_point_at_the_metrics_port(deployment: dict, container: dict) -> None:
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    metrics_port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == metrics_port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_service_links_do_not_leak_into_the_flag_namespace(pod_spec: dict, service: dict) -> None:
    # A Service named tensord would inject TENSORD_PORT, TENSORD_SERVICE_HOST, ...
    # into the TENSORD_* namespace the server reads its flags from.
    if service["metadata"]["name"].upper().replace("-", "_").startswith("TENSORD"):
        assert pod_spec.get("enableServiceLinks") is False


# ---- Docker Compose ----------------------------------------------------------


def services_by_profile(compose: dict) -> dict[str, tuple[str, dict]]:
    result = {}
    for name, svc in compose["services"].items():
        profiles = svc.get("profiles", [])
        assert len(profiles) == 1, f"{name} should be in exactly one profile, has {profiles}"
        result[profiles[0]] = (name, svc)
    return result


def test_compose_has_a_gpu_and_a_cpu_profile(compose: dict) -> None:
    profiles = services_by_profile(compose)
    assert set(profiles) == {"gpu", "cpu"}
    gpu_name, gpu = profiles["gpu"]
    _, cpu = profiles["cpu"]
    assert gpu_name == "tensord"
    assert gpu["image"] == "tensord:gpu" and cpu["image"] == "tensord:cpu"
    for svc in (gpu, cpu):
        context = (COMPOSE_FILE.parent / svc["build"]["context"]).resolve()
        assert context == ROOT, f"build context {context} is not the repository root"
    assert {k: str(v) for k, v in gpu["build"]["args"].items()} == GPU_BUILD_ARGS
    assert not cpu["build"].get("args"), "the CPU image uses the Dockerfile's defaults"


def test_compose_services_share_their_settings(compose: dict) -> None:
    gpu, cpu = compose["services"]["tensord"], services_by_profile(compose)["cpu"][1]
    for key in ("command", "environment", "secrets", "ports", "volumes", "healthcheck",
                "stop_grace_period", "restart"):
        assert key in gpu and gpu[key] == cpu[key], f"{key} differs between the services"
    assert gpu["restart"] == "unless-stopped"


def test_compose_secret_is_declared_mounted_documented_and_ignored(
    compose: dict, readme_commands: list[list[str]]
) -> None:
    (create,) = [c for c in readme_commands if c[:2] == ["openssl", "rand"]]
    assert create[-2] == ">", f"expected `openssl rand ... > PATH`, got {create}"
    readme_path = (ROOT / create[-1]).resolve()
    for name, svc in compose["services"].items():
        assert svc.get("secrets"), f"{name} has no secret"
        for ref in svc["secrets"]:
            source = ref if isinstance(ref, str) else ref["source"]
            target = source if isinstance(ref, str) else ref.get("target", source)
            declared = compose.get("secrets", {}).get(source)
            assert declared and "file" in declared, f"secret {source} is not declared with a file"
            assert (COMPOSE_FILE.parent / declared["file"]).resolve() == readme_path
            mounted = target if target.startswith("/") else f"/run/secrets/{target}"
            assert compose_env(svc)["TENSORD_AUTH_TOKEN_FILE"] == mounted
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(readme_path.relative_to(ROOT))], cwd=ROOT
    )
    assert ignored.returncode == 0, f"{readme_path} is not ignored by git"


def test_compose_healthcheck_probes_the_listen_port(compose: dict) -> None:
    for name, svc in compose["services"].items():
        grpc_port, _ = listen_ports(svc["command"], compose_env(svc))
        check = svc["healthcheck"]
        test = check["test"]
        assert test[:3] == ["CMD", "tensord", "--health-probe"], test
        assert address_port(test[3]) == grpc_port, f"{name} probes {test[3]}, listens on {grpc_port}"
        assert test[3].rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]")
        for key in ("interval", "timeout", "start_period"):
            assert parse_duration(check[key]) > 0
        assert int(check["retries"]) >= 1


def test_compose_publishes_the_listen_ports(compose: dict) -> None:
    for name, svc in compose["services"].items():
        grpc_port, metrics_port = listen_ports(svc["command"], compose_env(svc))
        published = published_ports(svc["ports"])
        assert set(published) == {grpc_port, metrics_port}, f"{name} publishes {published}"
        assert published[grpc_port] == GRPC_PORT and published[metrics_port] == METRICS_PORT


def test_compose_gpu_reservation_on_the_gpu_service_only(compose: dict) -> None:
    profiles = services_by_profile(compose)
    for profile, (name, svc) in profiles.items():
        devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        if profile == "gpu":
            assert len(devices) == 1, f"{name} reserves {devices}"
            assert devices[0]["driver"] == "nvidia"
            assert devices[0]["capabilities"] == ["gpu"]
            assert devices[0]["count"] == "all" or int(devices[0]["count"]) >= 1
        else:
            assert devices == [], f"{name} should not reserve a GPU"


def test_compose_data_volume_is_declared(compose: dict) -> None:
    declared = compose.get("volumes") or {}
    for name, svc in compose["services"].items():
        targets = {}
        for entry in svc["volumes"]:
            source, target = (entry.split(":")[:2] if isinstance(entry, str)
                              else (entry["source"], entry["target"]))
            targets[target] = source
        assert "/data" in targets, f"{name} mounts nothing on /data"
        assert targets["/data"] in declared, f"volume {targets['/data']} is not declared"


def test_compose_stop_grace_outlasts_the_server_drain(compose: dict) -> None:
    for name, svc in compose["services"].items():
        shutdown_grace = float(compose_env(svc)["TENSORD_SHUTDOWN_GRACE"])
        assert parse_duration(svc["stop_grace_period"]) > shutdown_grace, name


def test_compose_tensor_budget_fits_in_the_memory_limit(compose: dict) -> None:
    for name, svc in compose["services"].items():
        budget = parse_byte_size(compose_env(svc)["TENSORD_MAX_MEMORY"])
        limit = svc["deploy"]["resources"]["limits"]["memory"]
        assert budget < parse_compose_bytes(limit), f"{name}: budget {budget} >= limit {limit}"


# ---- README ----------------------------------------------------------------


def test_readme_build_commands_match_compose(compose: dict, readme_commands: list[list[str]]) -> None:
    builds = commands_starting(readme_commands, "docker", "build")
    tags = {}
    for cmd in builds:
        tag = cmd[cmd.index("-t") + 1]
        args = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--build-arg")
        assert cmd[-1] == ".", "the README builds from the repository root"
        tags[tag] = args
    assert tags == {"tensord:cpu": {}, "tensord:gpu": GPU_BUILD_ARGS}
    images = {svc["image"] for svc in compose["services"].values()}
    assert images == set(tags)


def test_readme_compose_and_kubectl_commands_name_existing_things(
    compose: dict, service: dict, readme_commands: list[list[str]]
) -> None:
    compose_cmds = commands_starting(readme_commands, "docker", "compose")
    assert compose_cmds
    profiles_named = set()
    for cmd in compose_cmds:
        assert (ROOT / flag_value(cmd, "-f")).resolve() == COMPOSE_FILE
        if "--profile" in cmd:
            profiles_named.add(flag_value(cmd, "--profile"))
    assert profiles_named == {"gpu"} and "gpu" in services_by_profile(compose)

    (apply,) = commands_starting(readme_commands, "kubectl", "apply")
    assert (ROOT / flag_value(apply, "-k") / "kustomization.yaml").is_file()

    for cmd in commands_starting(readme_commands, "kubectl", "port-forward"):
        assert cmd[2] == f"svc/{service['metadata']['name']}"
        service_ports = {p["port"] for p in service["spec"]["ports"]}
        for mapping in cmd[3:]:
            assert int(mapping.split(":")[-1]) in service_ports


def test_readme_ports_are_the_served_ports(readme_commands: list[list[str]]) -> None:
    text = README.read_text()
    grpcurls = commands_starting(readme_commands, "grpcurl")
    assert grpcurls
    for cmd in grpcurls:
        target = next(a for a in cmd[1:] if re.fullmatch(r"[\w.\-\[\]]+:\d+", a))
        assert address_port(target) == GRPC_PORT
    assert any(c[-1] == "grpc.health.v1.Health/Check" for c in grpcurls)
    assert f"http://HOST:{METRICS_PORT}/metrics" in text
    for port in re.findall(r'connect\("[^":]+:(\d+)"', text):
        assert int(port) == GRPC_PORT
    assert re.search(r'connect\("[^"]+", token=', text), "the README's client example sends no token"
