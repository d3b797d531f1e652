"""Static checks of the deployment files (Dockerfile, .dockerignore, docker-compose.yml, deploy/).

Nothing here needs a Docker engine: the compose file is parsed with PyYAML, the Dockerfile with a
small parser, and the worker's environment is validated through the worker's own settings classes.
``docker compose config -q`` runs too when the compose plugin is installed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from managed_agents._settings import ManagedAgentsSettings, temporal_connect_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
INIT_SQL = ROOT / "deploy" / "postgres-init.sql"

SERVICES = ("postgresql", "temporal", "temporal-ui", "worker")
# Published ports as the compose file's header documents them: (service, host port, container port).
DOCUMENTED_PORTS = {("temporal", 7233, 7233), ("temporal-ui", 8080, 8080)}
STORE_DATABASE = "managed_agents"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err} with ``env`` (empty by default)."""
    env = env or {}

    def repl(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        if op in (":-", "-"):
            present = env.get(name) if op == "-" else (env.get(name) or None)
            return arg if present is None else present
        if op in (":?", "?"):
            return env.get(name) or f"placeholder-{name.lower()}"
        return env.get(name, "")

    return _VAR.sub(repl, value)


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment as a dict; None marks a pass-through (a name without a value)."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): (None if v is None else str(v)) for k, v in env.items()}
    result: dict[str, str | None] = {}
    for item in env:
        key, sep, value = str(item).partition("=")
        result[key] = value if sep else None
    return result


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return {name: (cond or {"condition": "service_started"}) for name, cond in deps.items()}


def volume_sources(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of a service's volumes ("" source for an anonymous volume)."""
    result = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            result.append((str(entry.get("source", "")), str(entry["target"])))
            continue
        parts = str(entry).split(":")
        if len(parts) == 1:
            result.append(("", parts[0]))
        else:
            result.append((parts[0], parts[1]))
    return result


def is_bind_mount(source: str) -> bool:
    return source.startswith((".", "/", "~", "$"))


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    ports = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.add((int(entry["published"]), int(entry["target"])))
            continue
        spec = str(entry).split("/")[0]
        parts = spec.rsplit(":", 2)
        assert len(parts) >= 2, f"port {entry!r} publishes no fixed host port"
        ports.add((int(parts[-2]), int(parts[-1])))
    return ports


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    ref, _, digest = image.partition("@")
    last_slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > last_slash:
        return ref[:colon], ref[colon + 1 :], digest or None
    return ref, None, digest or None


def assert_pinned(image: str, where: str) -> tuple[str, str]:
    assert "$" not in image, f"{where}: image {image!r} depends on a variable; pin it in the file"
    repo, tag, _digest = split_image(image)
    assert tag, f"{where}: image {image!r} has no tag"
    assert tag != "latest", f"{where}: image {image!r} is not pinned (latest)"
    return repo, tag


def commented_sandbox_service() -> dict[str, Any]:
    """The commented-out `sandbox` service example at the end of the services, uncommented."""
    lines = COMPOSE_FILE.read_text().splitlines()
    start = lines.index("  # sandbox:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  #"):
            break
        block.append(line[4:])
    data = yaml.safe_load("\n".join(block))
    assert isinstance(data, dict) and isinstance(data.get("sandbox"), dict)
    return data["sandbox"]


# Dockerfile ------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    instructions: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue  # comments (also inside continuations) and blank lines
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        buf = ""
    assert not buf.strip(), "the Dockerfile ends inside a line continuation"
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage; stage 0 holds what precedes the first FROM (global ARGs)."""
    stages: list[list[tuple[str, str]]] = [[]]
    for instr in dockerfile_instructions():
        if instr[0] == "FROM":
            stages.append([])
        stages[-1].append(instr)
    return stages


def global_args() -> dict[str, str]:
    args = {}
    for keyword, value in dockerfile_stages()[0]:
        if keyword == "ARG" and "=" in value:
            name, _, default = value.partition("=")
            args[name.strip()] = default.strip().strip('"')
    return args


def resolve_args(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m[1], m[0]), value)


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed)
    return parsed


def copy_parts(value: str) -> tuple[list[str], list[str], str]:
    """(flags, sources, destination) of a COPY/ADD."""
    parts = exec_form(value) if value.startswith("[") else shlex.split(value)
    flags = [p for p in parts if p.startswith("--")]
    paths = [p for p in parts if not p.startswith("--")]
    assert len(paths) >= 2, f"COPY {value!r} needs a source and a destination"
    return flags, paths[:-1], paths[-1]


def env_assignments(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, value in stage:
        if keyword != "ENV":
            continue
        tokens = shlex.split(value)
        if tokens and "=" not in tokens[0]:  # legacy `ENV KEY value`
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            key, _, val = token.partition("=")
            env[key] = val
    return env


def dockerignore_patterns() -> list[str]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            patterns.append(line.rstrip("/"))
    return patterns


# --------------------------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------------------------


def test_compose_services_exist() -> None:
    missing = set(SERVICES) - set(services())
    assert not missing, f"docker-compose.yml lacks the services {sorted(missing)}"


def test_compose_images_are_pinned() -> None:
    svcs = services()
    for name, svc in svcs.items():
        if "image" in svc:
            assert_pinned(str(svc["image"]), name)
        else:
            assert "build" in svc, f"service {name} has neither an image nor a build"
    assert split_image(svcs["postgresql"]["image"])[0] == "postgres"
    assert split_image(svcs["postgresql"]["image"])[1].split(".")[0] == "16"

    repo, tag = assert_pinned(svcs["temporal"]["image"], "temporal")
    assert repo == "temporalio/auto-setup"
    assert re.fullmatch(r"1\.2\d\.\d+(\.\d+)?", tag), f"temporal: pin a specific 1.2x.y release, not {tag!r}"

    repo, tag = assert_pinned(svcs["temporal-ui"]["image"], "temporal-ui")
    assert repo == "temporalio/ui"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"temporal-ui: pin a specific x.y.z release, not {tag!r}"


def test_compose_depends_on_defined_services() -> None:
    svcs = services()
    for name, svc in svcs.items():
        for dep, cond in depends_on(svc).items():
            assert dep in svcs, f"service {name} depends on {dep!r}, which is not defined"
            assert dep != name
            if cond.get("condition") == "service_healthy":
                assert svcs[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; {dep} has no healthcheck"


def test_compose_postgresql_and_temporal() -> None:
    svcs = services()
    pg, temporal = svcs["postgresql"], svcs["temporal"]
    health = pg.get("healthcheck") or {}
    assert health.get("test") and not health.get("disable")
    assert any(
        target == "/var/lib/postgresql/data" and src and not is_bind_mount(src) for src, target in volume_sources(pg)
    ), "postgresql keeps its data in a named volume"

    env = environment(temporal)
    pg_env = environment(pg)
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert str(env.get("DB_PORT", "5432")) == "5432"
    assert env["POSTGRES_USER"] == pg_env["POSTGRES_USER"]
    assert env["POSTGRES_PWD"] == pg_env["POSTGRES_PASSWORD"]
    assert depends_on(temporal)["postgresql"]["condition"] == "service_healthy"

    ui = svcs["temporal-ui"]
    assert environment(ui)["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert "temporal" in depends_on(ui)


def test_compose_init_sql_creates_the_store_database() -> None:
    assert INIT_SQL.is_file()
    sql = INIT_SQL.read_text()
    assert re.search(rf'^\s*CREATE\s+DATABASE\s+"?{STORE_DATABASE}"?\s*;', sql, re.IGNORECASE | re.MULTILINE)
    mounts = volume_sources(services()["postgresql"])
    init_mounts = [(src, target) for src, target in mounts if target.startswith("/docker-entrypoint-initdb.d/")]
    assert init_mounts, "deploy/postgres-init.sql is not mounted into /docker-entrypoint-initdb.d"
    assert any((ROOT / src).resolve() == INIT_SQL.resolve() for src, _ in init_mounts)
    assert all(target.endswith(".sql") for _, target in init_mounts)


def test_compose_worker_environment() -> None:
    svcs = services()
    worker = svcs["worker"]
    env = environment(worker)

    host, _, port = (env["TEMPORAL_ADDRESS"] or "").partition(":")
    assert host == "temporal" and host in svcs
    assert (7233, int(port)) in published_ports(svcs["temporal"]) or int(port) == 7233
    assert env["TEMPORAL_NAMESPACE"] == "default"

    assert (env["ANTHROPIC_API_KEY"] or "").startswith("${ANTHROPIC_API_KEY:?"), "ANTHROPIC_API_KEY must be required"
    # A pass-through: the SDK would take an empty ANTHROPIC_BASE_URL ("${ANTHROPIC_BASE_URL:-}") as the URL.
    assert "ANTHROPIC_BASE_URL" in env and env["ANTHROPIC_BASE_URL"] is None

    url = sa.engine.make_url(interpolate(env["MANAGED_AGENTS_STORE_URL"] or ""))
    pg_env = environment(svcs["postgresql"])
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "postgresql" and url.host in svcs
    assert (url.port or 5432) == 5432
    assert url.database == STORE_DATABASE
    assert url.username == interpolate(pg_env["POSTGRES_USER"] or "")
    assert url.password == interpolate(pg_env["POSTGRES_PASSWORD"] or "")

    assert worker.get("restart") == "unless-stopped"
    assert worker.get("build") in (".", {"context": "."}) or worker["build"].get("context") == "."
    assert "temporal" in depends_on(worker)
    assert any(target == "/data" and src and not is_bind_mount(src) for src, target in volume_sources(worker))


def _check_worker_settings(env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch) -> ManagedAgentsSettings:
    """Validate a service's environment (and the image's ENV) with the worker's own settings."""
    image_env = env_assignments(dockerfile_stages()[-1])
    for key in list(os.environ):
        if key.startswith(("MANAGED_AGENTS_", "TEMPORAL_")):
            monkeypatch.delenv(key)
    for key, value in {**image_env, **env}.items():
        if key.startswith(("MANAGED_AGENTS_", "TEMPORAL_")) and value is not None:
            monkeypatch.setenv(key, interpolate(value))
    settings = ManagedAgentsSettings()
    config = temporal_connect_config()
    assert config["target_host"] == "temporal:7233"
    assert config.get("namespace", "default") == "default"
    assert settings.data_dir == Path("/data")
    assert settings.log_format == "json"
    assert settings.store_url and settings.store_url.startswith("postgresql+psycopg://")
    return settings


def test_compose_worker_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _check_worker_settings(environment(services()["worker"]), monkeypatch)
    assert "brain" in settings.roles
    # Sessions are pinned to their sandbox worker's queue: the id must survive container re-creation.
    assert "MANAGED_AGENTS_SANDBOX_ID" in environment(services()["worker"])


def test_compose_sandbox_example(monkeypatch: pytest.MonkeyPatch) -> None:
    text = COMPOSE_FILE.read_text()
    sandbox = commented_sandbox_service()
    svcs = services()
    env = environment(sandbox)
    settings = _check_worker_settings(env, monkeypatch)
    assert settings.roles == {"sandbox"}
    assert env.get("MANAGED_AGENTS_SANDBOX_ID") and env["MANAGED_AGENTS_SANDBOX_ID"] != environment(svcs["worker"]).get(
        "MANAGED_AGENTS_SANDBOX_ID"
    )
    assert env["MANAGED_AGENTS_STORE_URL"] == environment(svcs["worker"])["MANAGED_AGENTS_STORE_URL"]
    assert sandbox.get("image") == svcs["worker"].get("image")
    for dep in depends_on(sandbox):
        assert dep in svcs
    for src, _ in volume_sources(sandbox):
        assert re.search(rf"^\s*#\s*{re.escape(src)}:\s*$", text, re.MULTILINE), f"declare {src} (commented) too"


def test_compose_volumes_are_declared() -> None:
    data = compose()
    declared = set((data.get("volumes") or {}).keys())
    used = set()
    for name, svc in data["services"].items():
        for src, _ in volume_sources(svc):
            if not src:
                continue
            if is_bind_mount(src):
                assert (ROOT / src).exists(), f"service {name} bind-mounts {src}, which does not exist"
            else:
                assert src in declared, f"service {name} uses volume {src!r}, not declared under volumes:"
                used.add(src)
    assert declared <= used, f"declared but unused volumes: {sorted(declared - used)}"


def test_compose_ports_as_documented() -> None:
    published = {
        (name, host, container) for name, svc in services().items() for host, container in published_ports(svc)
    }
    assert published == DOCUMENTED_PORTS
    header = COMPOSE_FILE.read_text().split("\nservices:")[0]
    assert "http://localhost:8080" in header
    assert "7233" in header
    assert re.search(r"ANTHROPIC_API_KEY=\S+ docker compose up -d", header)
    assert "MANAGED_AGENTS_ROLE" in header and "sandbox" in header


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        out = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip().lstrip("v").startswith("2."):
            return [standalone]
    return None


def test_docker_compose_config() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("the Docker Compose v2 plugin (`docker compose`) is not installed here: `config -q` not run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "POSTGRES_", "COMPOSE_"))}
    base = [*command, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT)]
    ok = subprocess.run(
        [*base, "config", "-q"], env={**env, "ANTHROPIC_API_KEY": "test-key"}, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run([*base, "config", "-q"], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "set ANTHROPIC_API_KEY" in missing.stderr


# --------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore
# --------------------------------------------------------------------------------------------


def test_dockerfile_base_image_and_entrypoint() -> None:
    stages = dockerfile_stages()
    args = global_args()
    for stage in stages[1:]:
        image = resolve_args(stage[0][1].split()[0], args)
        assert image == "python:3.11-slim", f"unexpected base image {image!r}"
    final = stages[-1]
    entrypoints = [exec_form(value) for keyword, value in final if keyword == "ENTRYPOINT"]
    assert entrypoints and entrypoints[-1] == ["python", "worker.py"]
    workdirs = [value for keyword, value in final if keyword == "WORKDIR"]
    assert workdirs, "the final stage sets no WORKDIR for worker.py"
    copied = [copy_parts(value) for keyword, value in final if keyword == "COPY"]
    assert any(
        "worker.py" in srcs and dest in (".", "./", workdirs[-1], f"{workdirs[-1]}/") for _, srcs, dest in copied
    )


def test_dockerfile_not_root() -> None:
    final = dockerfile_stages()[-1]
    users = [value for keyword, value in final if keyword == "USER"]
    assert users, "the image runs as root (no USER)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0", ""), f"the image runs as {users[-1]!r}"
    # USER comes after everything that needs root (package installs, chown).
    last_user = max(i for i, (keyword, _) in enumerate(final) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in final[last_user:])


def test_dockerfile_environment_and_volume() -> None:
    final = dockerfile_stages()[-1]
    env = env_assignments(final)
    assert env.get("MANAGED_AGENTS_DATA_DIR") == "/data"
    assert env.get("MANAGED_AGENTS_LOG_FORMAT") == "json"
    volumes = [
        v
        for keyword, value in final
        if keyword == "VOLUME"
        for v in (exec_form(value) if value.startswith("[") else value.split())
    ]
    assert "/data" in volumes


def test_dockerfile_installs_the_project_without_dev_extras() -> None:
    runs = " ".join(value for keyword, value in dockerfile_instructions() if keyword == "RUN")
    installs = [cmd for cmd in re.split(r"&&|;", runs) if re.search(r"\bpip3? install\b", cmd)]
    assert any(re.search(r"(^|\s)\.(\s|$)", cmd) for cmd in installs), "no `pip install .`"
    assert all("[dev]" not in cmd and ".[" not in cmd for cmd in installs), "dev extras are installed"
    # Dependencies at the versions CI tested: exported from the lock, without dev extras.
    exports = [cmd for cmd in re.split(r"&&|;", runs) if re.search(r"\buv export\b", cmd)]
    assert exports and all("--locked" in cmd and "--no-dev" in cmd for cmd in exports), "not installed from uv.lock"
    assert all("--extra" not in cmd and "--all-extras" not in cmd for cmd in exports), "dev extras are installed"
    lock = (ROOT / "uv.lock").read_text()
    assert 'name = "psycopg-binary"' in lock, "the PostgreSQL driver (psycopg[binary]) is not in the lock"


def test_dockerfile_copies_existing_paths_not_ignored() -> None:
    patterns = dockerignore_patterns()
    copied: set[str] = set()
    for keyword, value in dockerfile_instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        flags, sources, _ = copy_parts(value)
        if any(flag.startswith("--from") for flag in flags):
            continue
        for src in sources:
            assert (ROOT / src).exists(), f"the Dockerfile copies {src}, which is not in the repository"
            normalized = src.rstrip("/").removeprefix("./")
            ignored = [p for p in patterns if not p.startswith("!") and fnmatch.fnmatch(normalized, p)]
            assert not ignored, f"the Dockerfile copies {src}, which .dockerignore excludes ({ignored})"
            copied.add(normalized)
    # Everything `pip install .` packages must be in the build context.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*").rstrip(".") for p in includes}
    assert {"pyproject.toml", "worker.py", *packages} <= copied


def test_dockerignore_excludes_local_state() -> None:
    patterns = set(dockerignore_patterns())
    for required in (
        ".venv",
        ".git",
        ".managed-agents",
        "**/__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "tests",
    ):
        assert required in patterns, f".dockerignore does not exclude {required}"


# --------------------------------------------------------------------------------------------
# The store's PostgreSQL driver
# --------------------------------------------------------------------------------------------


def test_store_postgresql_driver_available() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    declared = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        declared.extend(extra)
    if not any(re.match(r"psycopg(\[[^\]]*\])?\s*([<>=!~;]|$)", dep) for dep in declared):
        pytest.skip(
            "psycopg is not declared in pyproject.toml (dependencies or extras): postgresql+psycopg:// store URLs "
            "work only where it is installed by hand (the Docker image installs psycopg[binary] itself)"
        )
    try:
        engine = sa.create_engine("postgresql+psycopg://u:p@localhost/db")  # no connection is made
    except ModuleNotFoundError as exc:
        pytest.fail(
            f"psycopg is declared in pyproject.toml but not installed here ({exc}): re-install the project "
            "(`make` / `pip install -e '.[dev]'`)"
        )
    assert engine.dialect.driver == "psycopg"
    engine.dispose()
