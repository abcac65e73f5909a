from __future__ import annotations

import re
from pathlib import Path

import pytest

from resnet_serving import settings as settings_module
from resnet_serving.errors import ConfigError
from resnet_serving.inference import cpu
from resnet_serving.settings import ENV_TORCH_THREADS, Settings
from resnet_serving.torchserve import config as ts_config


def test_settings_from_env() -> None:
    s = Settings.from_env({"RESNET_SERVING_MAX_TOPK": "20", "RESNET_SERVING_MAX_IMAGE_PIXELS": "1_000_000"})
    assert s.max_topk == 20 and s.max_image_pixels == 1_000_000 and s.default_topk == 5
    assert Settings.from_env(s.to_env()) == s


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"RESNET_SERVING_MAX_TOPK": "lots"}, "expected an integer"),
        ({"RESNET_SERVING_MAX_TOPK": "0"}, "must be ≥ 1"),
        ({"RESNET_SERVING_DEFAULT_TOPK": "50", "RESNET_SERVING_MAX_TOPK": "10"}, "exceeds"),
        ({"RESNET_SERVING_MAX_TOPK": "5000"}, "1000"),
        ({"RESNET_SERVING_AMP": "int4"}, "RESNET_SERVING_AMP='int4': expected one of auto, off, fp16, bf16"),
        ({"RESNET_SERVING_COMPILE": "maybe"}, "RESNET_SERVING_COMPILE='maybe': expected 1 or 0"),
        ({"RESNET_SERVING_CPU_RESIZE": "fast"}, "RESNET_SERVING_CPU_RESIZE='fast': expected one of torch, pil"),
        ({"RESNET_SERVING_TORCH_THREADS": "two"}, "RESNET_SERVING_TORCH_THREADS='two': expected an integer"),
        ({"RESNET_SERVING_TORCH_THREADS": "0"}, "RESNET_SERVING_TORCH_THREADS='0': must be ≥ 1"),
    ],
)
def test_settings_fail_fast(env: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(match)):
        Settings.from_env(env)


def test_every_setting_has_one_variable_and_round_trips() -> None:
    s = Settings.from_env(
        {
            "RESNET_SERVING_AMP": " BF16 ",
            "RESNET_SERVING_COMPILE": "yes",
            "RESNET_SERVING_FREEZE": "off",
            "RESNET_SERVING_TORCH_THREADS": "3",
            "RESNET_SERVING_JAVA_OPTS": "-Xss2m",
            "RESNET_SERVING_HANDLER": "/opt/h.py",
        }
    )
    assert (s.amp, s.compile, s.freeze, s.gpu_decode, s.torch_threads) == ("bf16", True, False, True, 3)
    assert (s.java_opts, s.handler) == ("-Xss2m", Path("/opt/h.py"))
    assert Settings.from_env(s.to_env()) == s
    assert ENV_TORCH_THREADS in s.to_env() and ENV_TORCH_THREADS not in Settings().to_env()


def test_the_environment_is_read_in_one_module() -> None:
    """Configuration flows one way: only settings.py reads os.environ; everything else asks it."""
    import ast

    src = Path(settings_module.__file__).parent
    readers = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv")
                and getattr(node.value, "id", None) == "os"
            ):
                readers.append(str(path.relative_to(src)))
    assert sorted(set(readers)) == ["settings.py"]


def _cgroup(tmp_path: Path, v2: str | None = None, v1: tuple[int, int] | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2)
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(str(v1[0]))
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(str(v1[1]))
    return tmp_path


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    assert cpu.cgroup_cpu_quota(_cgroup(tmp_path, v2="150000 100000\n")) == 1.5
    assert cpu.available_cpus(tmp_path) == 1  # 1.5 CPUs → 1 thread, never oversubscribe


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    assert cpu.cgroup_cpu_quota(_cgroup(tmp_path, v2="max 100000\n")) is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    assert cpu.cgroup_cpu_quota(_cgroup(tmp_path / "a", v1=(400000, 100000))) == 4.0
    assert cpu.cgroup_cpu_quota(_cgroup(tmp_path / "b", v1=(-1, 100000))) is None  # -1 = unlimited


def test_thread_budget() -> None:
    assert cpu.thread_budget(1, cpus=8) == 8
    assert cpu.thread_budget(2, cpus=8) == 4
    assert cpu.thread_budget(3, cpus=2) == 1
    with pytest.raises(ValueError):
        cpu.thread_budget(0, cpus=2)


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_rendered_config_is_locked_down(tmp_path: Path) -> None:
    cfg = ts_config.ServeConfig(model_store=tmp_path, model_version="3", workers=2, threads=1, batch_size=4)
    props = _props(ts_config.render(cfg))
    assert props["inference_address"] == "http://127.0.0.1:8080"
    assert props["management_address"] == "http://127.0.0.1:8081"
    assert props["metrics_mode"] == "prometheus"
    assert props["disable_token_authorization"] == "true"
    assert props["enable_model_api"] == "false"
    assert props["allowed_urls"].startswith("file://") and str(tmp_path.name) in props["allowed_urls"]
    assert props["install_py_dep_per_model"] == "false"
    assert '"batchSize":4' in props["models"] and '"3":' in props["models"] and '"minWorkers":2' in props["models"]


def test_a_worker_may_load_as_long_as_serve_waits(tmp_path: Path) -> None:
    """TorchServe kills and restarts a worker whose load outlasts its startupTimeout (120 s by default), which a
    torch.compile warm-up can: the limit is serve's own wait, for the first version and for registered ones."""
    props = _props(ts_config.render(ts_config.ServeConfig(model_store=tmp_path, model_version="3")))
    assert props["default_startup_timeout"] == "300" and '"startupTimeout":300' in props["models"]
    props = _props(ts_config.render(ts_config.ServeConfig(model_store=tmp_path, startup_timeout_s=600)))
    assert props["default_startup_timeout"] == "600" and '"startupTimeout":600' in props["models"]
    with pytest.raises(ConfigError, match="startup-timeout"):
        ts_config.ServeConfig(model_store=tmp_path, startup_timeout_s=0)


def test_management_api_never_public(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        ts_config.ServeConfig(model_store=tmp_path, management_host="0.0.0.0")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"port": 0}, "port"), ({"port": 8081}, "differ"), ({"workers": 0}, "workers"), ({"batch_size": 0}, "batch")],
)
def test_bad_serve_config(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ts_config.ServeConfig(model_store=tmp_path, **kwargs)


def test_thread_budget_in_config(tmp_path: Path) -> None:
    cfg = ts_config.ServeConfig(model_store=tmp_path, workers=1)
    assert cfg.torch_threads == cpu.available_cpus()
    assert ts_config.ServeConfig(model_store=tmp_path, threads=3).torch_threads == 3


def test_the_readme_documents_every_setting() -> None:
    """Beyond the generated reference page: the README or a hand-written docs page says what each one is for."""
    from dataclasses import fields

    from resnet_serving.settings import env_name
    from tests.helpers.docs_pages import pages, text

    readme = "\n".join(text(page) for page in pages())
    missing = [env_name(f.name) for f in fields(Settings) if f"`{env_name(f.name)}`" not in readme]
    assert missing == []


def test_a_bad_setting_is_the_callers_mistake_exit_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from resnet_serving.cli import main

    monkeypatch.setenv("RESNET_SERVING_COMPILE", "maybe")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "RESNET_SERVING_COMPILE='maybe'" in err and "Traceback" not in err


def test_serve_defaults_to_one_worker_with_every_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cfg = ts_config.ServeConfig(model_store=tmp_path)
    assert (cfg.workers, cfg.torch_threads) == (1, cpu.available_cpus())
    assert '"batchSize":8' in ts_config.render(cfg)


@pytest.mark.parametrize(("visible", "gpus"), [("0,1", 2), ("3", 1), ("", 0), ("-1", 0)])
def test_one_worker_per_visible_gpu(monkeypatch: pytest.MonkeyPatch, visible: str, gpus: int) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert ts_config.visible_gpus() == gpus
    assert ts_config.default_workers() == max(1, gpus)


def test_gpus_counted_as_torchserve_counts_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CUDA_VISIBLE_DEVICES, ``nvidia-smi -L`` (a stand-in script here: no GPU on this machine)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA A10G (UUID: GPU-1)'\necho 'GPU 1: NVIDIA A10G (UUID: GPU-2)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ts_config.visible_gpus() == 2
    smi.unlink()
    assert ts_config.visible_gpus() == 0


def test_the_default_queue_is_a_few_batches_per_worker(tmp_path: Path) -> None:
    """A bounded queue sized in batches: an accepted request waits about QUEUED_BATCHES batch times, on any
    hardware; a flag value overrides it."""
    cfg = ts_config.ServeConfig(model_store=tmp_path, workers=2, batch_size=4)
    assert cfg.queue_size == ts_config.QUEUED_BATCHES * 2 * 4
    assert f"job_queue_size={ts_config.QUEUED_BATCHES * 8}\n" in ts_config.render(cfg)
    assert ts_config.ServeConfig(model_store=tmp_path, job_queue_size=5).queue_size == 5
    with pytest.raises(ConfigError, match="--job-queue-size must be ≥ 0"):
        ts_config.ServeConfig(model_store=tmp_path, job_queue_size=-1)


@pytest.mark.parametrize(
    ("env", "added"),
    [
        ({}, {"GOMP_SPINCOUNT": cpu.GOMP_SPINCOUNT}),
        ({"PATH": "/bin"}, {"GOMP_SPINCOUNT": cpu.GOMP_SPINCOUNT}),
        ({"OMP_WAIT_POLICY": "PASSIVE"}, {}),
        ({"GOMP_SPINCOUNT": "300000"}, {}),
    ],
)
def test_serve_sets_the_openmp_spin_only_where_the_caller_chose_no_wait(env: dict[str, str], added: dict) -> None:
    """A caller's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins: serve adds its spin count only where neither is set."""
    assert cpu.openmp_env(env) == added


def test_children_inherit_sets_variables_for_the_block_and_restores_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the bench's raw processes are spawned with: the extra variables inside the block, the caller's after."""
    import os
    import subprocess
    import sys

    from resnet_serving.settings import children_inherit

    monkeypatch.setenv("RESNET_SERVING_TEST_KEPT", "before")
    monkeypatch.delenv("RESNET_SERVING_TEST_NEW", raising=False)
    code = "import os; print(*(os.environ.get(f'RESNET_SERVING_TEST_{n}') for n in ('KEPT', 'NEW')))"
    probe = [sys.executable, "-c", code]
    with children_inherit({"RESNET_SERVING_TEST_KEPT": "inside", "RESNET_SERVING_TEST_NEW": "new"}):
        assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout.split() == ["inside", "new"]
    assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout.split() == ["before", "None"]
    assert "RESNET_SERVING_TEST_NEW" not in os.environ
