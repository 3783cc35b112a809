"""Building small wheels for tests: installable offline with --no-index --find-links."""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

CP = f"cp{sys.version_info.major}{sys.version_info.minor}"
LINUX_TAGS = {"x86_64": "manylinux_2_17_x86_64", "aarch64": "manylinux_2_17_aarch64"}


def build_wheel(
    directory: Path,
    name: str,
    version: str,
    modules: dict[str, str] | None = None,
    requires: list[str] | None = None,
    extras: dict[str, list[str]] | None = None,
    tag: str = "py3-none-any",
) -> Path:
    """Write ``<name>-<version>-<tag>.whl`` into ``directory`` (``tag``: e.g.
    ``cp311-cp311-manylinux_2_17_aarch64`` for a platform's own wheel).

    ``modules`` maps paths inside the wheel (e.g. ``"demo_a/__init__.py"``) to their source;
    by default a package named like the distribution that knows its version. ``extras`` maps
    each extra to the requirements it adds.
    """
    directory.mkdir(parents=True, exist_ok=True)
    package = name.replace("-", "_")
    files = dict(modules or {f"{package}/__init__.py": f"VERSION = {version!r}\n"})
    dist_info = f"{package}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires or [])
    for extra, extra_requires in (extras or {}).items():
        metadata += f"Provides-Extra: {extra}\n"
        metadata += "".join(f'Requires-Dist: {r}; extra == "{extra}"\n' for r in extra_requires)
    files[f"{dist_info}/METADATA"] = metadata
    files[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: runenv-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    )
    record = [
        f"{path},{_record_hash(content)},{len(content.encode())}" for path, content in files.items()
    ]
    record.append(f"{dist_info}/RECORD,,")
    wheel = directory / f"{package}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def platform_wheels(directory: Path) -> Path:
    """``app`` (pure) needing ``native`` everywhere, ``armonly`` on aarch64 and ``maconly`` on
    macOS; ``native`` as one wheel per Linux machine, each knowing which it is."""
    build_wheel(
        directory,
        "app",
        "1.0",
        requires=[
            "native",
            'armonly; platform_machine == "aarch64"',
            'maconly; sys_platform == "darwin"',
        ],
    )
    build_wheel(directory, "armonly", "1.0")
    build_wheel(directory, "maconly", "1.0")
    for machine, tag in LINUX_TAGS.items():
        modules = {"native/__init__.py": f"ARCH = {machine!r}\n"}
        build_wheel(directory, "native", "1.0", modules=modules, tag=f"{CP}-{CP}-{tag}")
    return directory


_BACKEND = """
import base64, hashlib, os, zipfile

NAME, VERSION = {name!r}, {version!r}


def get_requires_for_build_wheel(config_settings=None):
    return []


def _hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "sha256=" + digest


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist_info = NAME + "-" + VERSION + ".dist-info"
    files = {{
        NAME + "/__init__.py": "BUILT_BY = " + repr(os.environ.get("RUNENV_HOME", "")) + "\\n",
        dist_info + "/METADATA": "Metadata-Version: 2.1\\nName: " + NAME + "\\nVersion: "
        + VERSION + "\\n",
        dist_info + "/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }}
    filename = NAME + "-" + VERSION + "-py3-none-any.whl"
    record = [p + "," + _hash(t.encode()) + "," + str(len(t)) for p, t in files.items()]
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(dist_info + "/RECORD", "\\n".join(record + [dist_info + "/RECORD,,"]))
    return filename
"""


def build_sdist(directory: Path, name: str, version: str) -> Path:
    """Write ``<name>-<version>.tar.gz``: an sdist whose in-tree build backend needs nothing
    from an index, and whose wheel says which ``RUNENV_HOME`` built it (``BUILT_BY``)."""
    import io
    import tarfile

    directory.mkdir(parents=True, exist_ok=True)
    root = f"{name}-{version}"
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
        'backend-path = ["."]\n',
        "backend.py": _BACKEND.format(name=name, version=version),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    sdist = directory / f"{root}.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return sdist


def _record_hash(content: str) -> str:
    digest = hashlib.sha256(content.encode()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
