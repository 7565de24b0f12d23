"""The Dockerfile and the Kubernetes manifests: schema-valid and keeping the deployment's rules.

Every manifest in deploy/kubernetes/ is validated offline against the Kubernetes JSON schemas that
`kubernetes-validate` bundles, in strict mode (an unknown or misspelt field fails), for the oldest
Kubernetes the manifests support (1.29: native sidecar containers) and the newest the package
knows. The rules a schema cannot see (non-root, probes on the ops port, one shard per replica,
the key from a mounted file and never a literal) are asserted on the parsed documents. Building
and running the image is scripts/check-image's job.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from follower.cli.parser import build_parser
from follower.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
KUBERNETES_VERSIONS = ("1.29", latest_version())
OPS_PORT = 9464
KEY_FILE_ENV = "GOLDRUSH_SERVICE_KEY_FILE"
SECRET_LIKE = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)
PLACEHOLDER = "REPLACE-ME-placeholder-not-a-real-key"


def documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of one manifest file, empty ones left out."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def all_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in MANIFESTS:
        for doc in documents(path):
            yield path, doc


def one(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in all_documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("StatefulSet")["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    spec = pod_spec()
    for c in spec.get("initContainers", []) + spec["containers"]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"no container {name!r}")


def all_containers() -> list[dict[str, Any]]:
    spec = pod_spec()
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def flag(args: list[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in a container's args, else None."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def mount(c: dict[str, Any], path: str) -> dict[str, Any]:
    found = [m for m in c.get("volumeMounts", []) if m["mountPath"] == path]
    assert len(found) == 1, f"{c['name']}: expected one mount at {path}"
    return dict(found[0])


def config_map_data(name: str) -> dict[str, str]:
    for _, doc in all_documents():
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == name:
            return dict(doc["data"])
    raise AssertionError(f"no ConfigMap {name!r}")


# ------------------------------------------------------------------------------- schema


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_against_the_kubernetes_schema(path: Path, version: str) -> None:
    """Each document validates strictly against the bundled schema of its kind and apiVersion."""
    docs = documents(path)
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        # SchemaNotFoundError (an unknown kind/apiVersion) fails the test too.
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_strict_schema_rejects_a_misspelt_field() -> None:
    """The validator really checks: a typo in a probe is an error, not a silent pass."""
    statefulset = one("StatefulSet")
    probe = statefulset["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    probe["httpGett"] = probe.pop("httpGet")
    with pytest.raises(kubernetes_validate.ValidationError, match="httpGett"):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[0], strict=True)


def test_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    """`kubectl apply -k` applies everything except secret.example.yaml (a placeholder)."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    expected = {p.name for p in MANIFESTS} - {"secret.example.yaml"}
    assert listed == expected


# -------------------------------------------------------------------------- sharding


def test_shard_count_equals_replicas_and_the_index_comes_from_the_hostname() -> None:
    """N replicas follow N shards; each takes its index from its StatefulSet ordinal."""
    statefulset = one("StatefulSet")
    args = container("follower")["args"]
    assert flag(args, "--shard-count") == str(statefulset["spec"]["replicas"])
    assert "--shard-from-hostname" in args
    assert flag(args, "--shard-index") is None, "a fixed index would give every pod one shard"


def test_the_headless_service_governs_the_statefulset() -> None:
    """Stable pod names (goldrush-follower-0, -1, ...) come from the governing headless Service."""
    service, statefulset = one("Service"), one("StatefulSet")
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()


# -------------------------------------------------------------------------- security


def test_pods_run_as_the_images_non_root_user() -> None:
    """The pod runs as the Dockerfile's numeric USER, never root, with the volume group set."""
    security = pod_spec()["securityContext"]
    uid, gid = dockerfile_user()
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == uid != 0
    assert security["runAsGroup"] == gid
    assert security["fsGroup"] == gid
    assert pod_spec()["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", ["prepare-data", "vector", "follower"])
def test_every_container_is_locked_down(name: str) -> None:
    """No privilege escalation, no capability, a read-only root filesystem, bounded memory."""
    c = container(name)
    security = c["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys()
    assert "memory" in c["resources"]["limits"]
    assert not c["image"].endswith(":latest") and ":" in c["image"]


def test_the_service_key_comes_from_a_mounted_secret_file() -> None:
    """GOLDRUSH_SERVICE_KEY_FILE names the Secret's file, mounted without subPath (rotation)."""
    follower = container("follower")
    env = {e["name"]: e for e in follower["env"]}
    assert "GOLDRUSH_SERVICE_KEY" not in env
    key_path = Path(env[KEY_FILE_ENV]["value"])
    key_mount = mount(follower, str(key_path.parent))
    assert key_mount.get("readOnly") is True
    assert "subPath" not in key_mount, "subPath mounts never see a rotated Secret"
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == key_mount["name"])
    items = {item["path"]: item["key"] for item in volume["secret"]["items"]}
    assert key_path.name in items
    example = one("Secret")
    assert volume["secret"]["secretName"] == example["metadata"]["name"]
    assert items[key_path.name] in example["stringData"]


def test_no_manifest_holds_a_key() -> None:
    """The only Secret is the example with its placeholder; no env var carries a literal secret."""
    example = one("Secret")
    assert list(example["stringData"].values()) == [PLACEHOLDER]
    for path in [*MANIFESTS, DEPLOY / "kustomization.yaml", ROOT / "Dockerfile"]:
        assert "cqt_" not in path.read_text(encoding="utf-8"), f"{path.name}: looks like a key"
    for c in all_containers():
        for e in c.get("env", []):
            if SECRET_LIKE.search(e["name"]) and "value" in e:
                assert e["name"].endswith("_FILE"), f"{c['name']}: {e['name']} has a literal value"


# ---------------------------------------------------------------------- ops and data


def test_probes_ask_the_ops_server() -> None:
    """Liveness and startup ask /healthz, readiness /readyz, on the port `--listen` opens."""
    follower = container("follower")
    listen = flag(follower["args"], "--listen")
    assert listen is not None
    assert int(listen.rsplit(":", 1)[1]) == OPS_PORT
    ports = {p["name"]: p["containerPort"] for p in follower["ports"]}
    for probe, path in [("livenessProbe", "/healthz"), ("startupProbe", "/healthz"),
                        ("readinessProbe", "/readyz")]:
        get = follower[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == OPS_PORT
    service_port = one("Service")["spec"]["ports"][0]
    assert ports[service_port["targetPort"]] == OPS_PORT


def test_state_and_events_live_on_the_per_replica_volume() -> None:
    """The checkpoint and the event files are on the replica's PVC; Vector reads the same files."""
    claims = {t["metadata"]["name"] for t in one("StatefulSet")["spec"]["volumeClaimTemplates"]}
    follower, vector = container("follower"), container("vector")
    args = follower["args"]
    state_file = Path(flag(args, "--state-file") or "")
    output_dir = flag(args, "--output-dir")
    assert flag(args, "--output") == "file"
    state_mount = mount(follower, str(state_file.parent))
    events_mount = mount(follower, str(output_dir))
    shipped = mount(vector, str(output_dir))
    assert state_mount["name"] in claims and events_mount["name"] in claims
    assert (shipped["name"], shipped["subPath"]) == (events_mount["name"], events_mount["subPath"])
    assert shipped.get("readOnly") is True

    vector_config = yaml.safe_load(config_map_data("goldrush-follower-vector")["vector.yaml"])
    include = vector_config["sources"]["follower"]["include"]
    assert include == [f"{output_dir}/*.jsonl"]
    assert mount(vector, vector_config["data_dir"])["name"] in claims
    assert mount(vector, "/etc/vector")["readOnly"] is True
    assert container("vector")["restartPolicy"] == "Always", "a native sidecar stops last"


def test_the_configmaps_follower_toml_is_a_valid_configuration(tmp_path: Path) -> None:
    """The follower accepts the ConfigMap's follower.toml as it is."""
    text = config_map_data("goldrush-follower-config")["follower.toml"]
    assert "service_key" not in tomllib.loads(text), "the key never goes in the config file"
    path = tmp_path / "follower.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(config_path=path, env={"GOLDRUSH_SERVICE_KEY": "test-key"}, flags={})
    assert config.pipelines


@pytest.mark.parametrize("source", ["statefulset", "dockerfile-cmd"])
def test_the_container_args_are_accepted_by_the_follower_cli(source: str) -> None:
    """Every flag the StatefulSet and the image's CMD pass exists in `follower run`."""
    args = container("follower")["args"] if source == "statefulset" else dockerfile_json("CMD")
    try:
        ns = build_parser().parse_args(args)
    except SystemExit as exc:  # argparse reports the bad flag on stderr
        pytest.fail(f"follower rejects {args}: exit {exc.code}")
    assert ns.command == "run"


# ------------------------------------------------------------------------ Dockerfile


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_json(keyword: str) -> list[str]:
    """The exec-form (JSON) arguments of the final stage's last `keyword` instruction."""
    values = [rest for k, rest in final_stage() if k == keyword]
    assert values, f"no {keyword} in the final stage"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list), f"{keyword} is not in exec form"
    return [str(item) for item in parsed]


def dockerfile_user() -> tuple[int, int]:
    users = [rest for k, rest in final_stage() if k == "USER"]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    return int(uid), int(gid or uid)


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    """USER is numeric (so runAsNonRoot can verify it) and not 0."""
    uid, gid = dockerfile_user()
    assert uid != 0 and gid != 0


def test_tini_is_pid_1_and_execs_the_follower() -> None:
    """tini forwards SIGTERM and reaps zombies; the command itself is `follower` (exec form)."""
    assert dockerfile_json("ENTRYPOINT") == ["/usr/bin/tini", "--", "follower"]
    cmd = dockerfile_json("CMD")
    assert cmd[0] == "run"
    assert flag(cmd, "--state-file") == "/var/lib/follower/state.json"
    assert flag(cmd, "--listen") == f"0.0.0.0:{OPS_PORT}"


def test_the_image_has_a_healthcheck_on_healthz_and_its_volumes() -> None:
    """HEALTHCHECK asks the ops server's /healthz; state and output are volumes."""
    checks = [rest for k, rest in final_stage() if k == "HEALTHCHECK"]
    assert len(checks) == 1
    assert f"http://127.0.0.1:{OPS_PORT}/healthz" in checks[0]
    assert "curl" not in checks[0] and "wget" not in checks[0], "slim images have neither"
    assert set(dockerfile_json("VOLUME")) == {"/var/lib/follower", "/var/log/follower"}


def test_the_image_is_built_in_stages_from_the_constraints() -> None:
    """A builder stage installs the project with -c constraints.txt; the final stage copies it."""
    instructions = dockerfile()
    bases = [rest.split()[0] for k, rest in instructions if k == "FROM"]
    assert len(bases) >= 2
    assert all(re.fullmatch(r"(docker\.io/library/)?python:3\.\d+-slim(-\w+)?", b) for b in bases)
    runs = " ".join(rest for k, rest in instructions if k == "RUN")
    assert "--constraint constraints.txt" in runs or "-c constraints.txt" in runs
    assert any(k == "COPY" and rest.startswith("--from=") for k, rest in final_stage())


def test_no_secret_is_baked_into_the_image() -> None:
    """No ENV or ARG is named like a secret; the build context is an allow-list."""
    for keyword, rest in dockerfile():
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", rest)
            assert not [n for n in names if SECRET_LIKE.search(n)], f"{keyword} {rest}"
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", ".dockerignore must exclude everything, then allow what is needed"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        src
        for keyword, rest in dockerfile()
        if keyword == "COPY" and not rest.startswith("--from=")
        for src in rest.split()[:-1]
    }
    assert copied <= allowed
