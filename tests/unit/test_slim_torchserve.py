"""dev/gpu-bench/slim_torchserve.py on a small made-up wheel: what it drops, what it keeps, and a RECORD that pip
would accept. The real wheel goes through it in tests/smoke/test_gpu_bench_bundle.py."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import REPO


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("slim_torchserve", REPO / "dev" / "gpu-bench" / "slim_torchserve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slim = _load()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


JAR = {
    "META-INF/MANIFEST.MF": b"Main-Class: org.pytorch.serve.ModelServer\n",
    "org/pytorch/serve/ModelServer.class": b"server",
    "io/netty/channel/Channel.class": b"netty",
    "org/codehaus/groovy/Groovy.class": b"groovy",
    "org/junit/Test.class": b"junit",
    "META-INF/native/libnetty_transport_native_epoll_x86_64.so": b"epoll",
    "META-INF/native/libnetty_transport_native_epoll_aarch_64.so": b"arm",
    "META-INF/native/libnetty_transport_native_kqueue_x86_64.jnilib": b"mac",
    "META-INF/native/windows64/jansi.dll": b"win",
    # a service file with one provider kept and one dropped, and one whose providers are all dropped
    "META-INF/services/io.grpc.Provider": b"# licence\nio.netty.channel.Channel\norg.codehaus.groovy.Groovy\n",
    "META-INF/services/javax.script.ScriptEngineFactory": b"org.codehaus.groovy.Groovy\n",
}


def test_the_jar_keeps_the_server_and_linux_x86_64_only() -> None:
    out = zipfile.ZipFile(io.BytesIO(slim.slim_jar(_zip(JAR))))
    assert sorted(out.namelist()) == sorted([
        "META-INF/MANIFEST.MF",
        "org/pytorch/serve/ModelServer.class",
        "io/netty/channel/Channel.class",
        "META-INF/native/libnetty_transport_native_epoll_x86_64.so",
        "META-INF/services/io.grpc.Provider",
    ])  # fmt: skip
    assert out.read("META-INF/services/io.grpc.Provider") == b"io.netty.channel.Channel\n"
    assert out.read("org/pytorch/serve/ModelServer.class") == b"server"


def test_the_wheel_gets_the_new_jar_and_a_matching_record(tmp_path: Path) -> None:
    jar = _zip(JAR)
    record = f"ts/__init__.py,sha256=x,1\n{slim.JAR},sha256=old,{len(jar)}\nts-0.dist-info/RECORD,,\n"
    wheel = tmp_path / "torchserve-0.12.0-py3-none-any.whl"
    wheel.write_bytes(_zip({"ts/__init__.py": b"", slim.JAR: jar, "ts-0.dist-info/RECORD": record.encode()}))
    target = slim.slim_wheel(wheel, tmp_path / "out")
    assert target.name == wheel.name and not list((tmp_path / "out").glob("*.partial"))
    with zipfile.ZipFile(target) as z:
        new_jar = z.read(slim.JAR)
        rows = z.read("ts-0.dist-info/RECORD").decode().splitlines()
        assert z.read("ts/__init__.py") == b""
    digest = base64.urlsafe_b64encode(hashlib.sha256(new_jar).digest()).rstrip(b"=").decode()
    assert rows == [
        "ts/__init__.py,sha256=x,1",
        f"{slim.JAR},sha256={digest},{len(new_jar)}",
        "ts-0.dist-info/RECORD,,",
    ]
    assert len(new_jar) < len(jar)


def test_a_wheel_without_the_jar_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "other-1.0-py3-none-any.whl"
    wheel.write_bytes(_zip({"other/__init__.py": b""}))
    with pytest.raises(SystemExit, match="is this a TorchServe wheel"):
        slim.slim_wheel(wheel, tmp_path / "out")
    assert not (tmp_path / "out" / wheel.name).exists()
