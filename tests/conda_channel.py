"""Local conda channels for tests, built offline with py-rattler-build and indexed with py-rattler.

No conda channel is reachable from the test machines, so the tests make their own: packages are
assembled from a few files each with ``rattler_build.assemble_package`` (no recipe, no build
environment, no solve; ~10 ms a package) and indexed with ``rattler.index.index_fs``, which
writes the same ``repodata.json`` a real channel serves. ``rattler.solve`` and
``rattler.install`` then work against the channel's ``file://`` URL.

The ``python`` package is a stand-in: no real interpreter can be downloaded here. It holds

- ``bin/pythonX.Y``, a symlink to a real interpreter on this machine (for the host's version:
  ``sys._base_executable`` resolved, so a venv's python still points at the base install),
  with ``bin/python3`` and ``bin/python`` linking to it;
- ``pyvenv.cfg`` (``home`` = the interpreter's directory, ``include-system-site-packages =
  false``), so the prefix behaves as an isolated interpreter exactly as a venv does:
  ``sys.prefix`` is the conda prefix, its ``lib/pythonX.Y/site-packages`` is on the path and the
  host's packages are not;
- ``lib/pythonX.Y/site-packages/README.txt``, so the directory exists before anything else lands.

``uv pip install --python PREFIX/bin/python ...`` installs into such a prefix with no further
flags (uv sees the ``pyvenv.cfg`` and says "Using Python 3.11.7 environment at: PREFIX").

``noarch: python`` packages carry their modules under ``site-packages/`` (rattler relinks them
into ``lib/pythonX.Y/site-packages`` of the solved python) plus a ``.dist-info`` with
``INSTALLER`` = ``conda``, as conda-forge packages do, so uv sees them as installed.

:func:`standard_packages` is the set the ``conda_channel`` fixture (tests/conftest.py) serves;
see /work/conda-notes.md for what each package is for.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

# One fixed build time: packages built twice are byte-for-byte the same apart from the index,
# and rattler's solver requires a timestamp on every record.
BUILD_TIME = datetime(2024, 1, 1, tzinfo=timezone.utc)
BUILD_STRING = "0_runenv"


def host_subdir() -> str:
    """The conda platform of this machine, e.g. ``linux-64``."""
    from rattler import Subdir

    return str(Subdir.current())


@dataclass(frozen=True)
class CondaPackage:
    """One package to build: its files as text, keyed by their path inside the prefix."""

    name: str
    version: str
    files: Mapping[str, str] = field(default_factory=dict)
    depends: Sequence[str] = ()
    constrains: Sequence[str] = ()
    # "noarch" for noarch packages, else a platform (linux-64, osx-arm64, ...)
    subdir: str = "noarch"
    noarch: Literal["python", "generic"] | None = "generic"
    executables: Sequence[str] = ()  # paths in ``files`` that get mode 0o755
    symlinks: Mapping[str, str] = field(default_factory=dict)  # path -> link target
    build_string: str = BUILD_STRING

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build_string}.conda"


@dataclass(frozen=True)
class PythonStandIn:
    """A ``python`` package of the channel and the real interpreter it points at."""

    version: str  # full version, e.g. 3.11.7
    executable: Path  # the real interpreter bin/pythonX.Y links to
    real: bool  # False: no interpreter of this version here; the link is the host's (solve only)

    @property
    def major_minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


@dataclass(frozen=True)
class CondaChannel:
    """A built and indexed channel on disk."""

    path: Path
    python: PythonStandIn  # the host's major.minor
    other_python: PythonStandIn  # a second minor version, for pinning

    @property
    def url(self) -> str:
        """The channel's ``file://`` URL, as a spec's ``channels`` list names it."""
        return self.path.as_uri()

    @property
    def subdir(self) -> str:
        return host_subdir()

    def add(self, packages: Iterable[CondaPackage]) -> None:
        """Build more packages into this channel and re-index it (copy the channel first)."""
        build_channel(self.path, packages)

    def copy_to(self, destination: Path) -> CondaChannel:
        """A private copy, for tests that add packages (the fixture's channel is shared)."""
        shutil.copytree(self.path, destination, symlinks=True)
        return CondaChannel(destination, self.python, self.other_python)


def build_channel(root: Path, packages: Iterable[CondaPackage]) -> Path:
    """Build ``packages`` into the channel at ``root`` (created if needed) and index it.

    ``noarch`` and the host's subdir always exist (with an empty index if no package lands
    there), as clients fetch both. Packages already in the channel stay.
    """
    for subdir in ("noarch", host_subdir()):
        (root / subdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="conda-stage-") as stage:
        for number, package in enumerate(packages):
            _assemble(package, Path(stage) / str(number), root / package.subdir)
    # In a child that ends with os._exit: py-rattler's async calls can crash the interpreter
    # at exit (a tokio thread drops Python objects during finalization; /work/conda-notes.md).
    subprocess.run([sys.executable, __file__, "--index", str(root)], check=True, timeout=120)
    return root


def _index_and_exit(root: Path) -> None:
    from rattler.index import index_fs

    asyncio.run(index_fs(root, write_zst=False, write_shards=False, force=True))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _assemble(package: CondaPackage, stage: Path, output_dir: Path) -> Path:
    from rattler_build import assemble_package, collect_files

    stage.mkdir(parents=True)
    for relative, text in package.files.items():
        path = stage / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if relative in package.executables:
            path.chmod(0o755)
    for relative, target in package.symlinks.items():
        (stage / relative).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, stage / relative)
    output = assemble_package(
        name=package.name,
        version=package.version,
        target_platform=package.subdir,
        build_string=package.build_string,
        output_dir=output_dir,
        files=collect_files(stage, include_hidden=True),
        depends=list(package.depends),
        constrains=list(package.constrains),
        noarch=package.noarch if package.subdir == "noarch" else None,
        timestamp=BUILD_TIME,
        compression_level=1,
        detect_prefix=False,
    )
    return output.path


# --- ready-made packages -------------------------------------------------------------------


def python_package(stand_in: PythonStandIn, subdir: str | None = None) -> CondaPackage:
    """The ``python`` stand-in: links to a real interpreter plus a ``pyvenv.cfg``."""
    xy = stand_in.major_minor
    return CondaPackage(
        name="python",
        version=stand_in.version,
        subdir=subdir or host_subdir(),
        noarch=None,
        files={
            "pyvenv.cfg": (
                f"home = {stand_in.executable.parent}\n"
                "include-system-site-packages = false\n"
                f"version = {stand_in.version}\n"
            ),
            f"lib/python{xy}/site-packages/README.txt": "conda-installed packages go here\n",
        },
        symlinks={
            f"bin/python{xy}": str(stand_in.executable),
            "bin/python3": f"python{xy}",
            "bin/python": f"python{xy}",
        },
    )


def python_module_package(
    name: str, version: str, depends: Sequence[str] = (), source: str = ""
) -> CondaPackage:
    """A ``noarch: python`` package: module ``name`` (``VERSION``; ``python -m name`` prints it)."""
    module = name.replace("-", "_")
    dist_info = f"site-packages/{module}-{version}.dist-info"
    return CondaPackage(
        name=name,
        version=version,
        noarch="python",
        depends=["python", *depends],
        files={
            f"site-packages/{module}/__init__.py": f"VERSION = {version!r}\n{source}",
            f"site-packages/{module}/__main__.py": f"from {module} import VERSION\nprint(VERSION)",
            f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
            f"{dist_info}/INSTALLER": "conda\n",
        },
    )


def cli_package(name: str, version: str, depends: Sequence[str] = ()) -> CondaPackage:
    """A ``noarch: generic`` package with one shell command: ``name ARGS`` prints its version."""
    return CondaPackage(
        name=name,
        version=version,
        depends=depends,
        files={f"bin/{name}": f'#!/bin/sh\necho "{name} {version} $*"\n'},
        executables=[f"bin/{name}"],
    )


def host_python() -> PythonStandIn:
    """This interpreter's base install (a venv's python resolves to the one it was made from)."""
    executable = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    version = ".".join(str(part) for part in sys.version_info[:3])
    return PythonStandIn(version, executable, real=True)


def other_python() -> PythonStandIn:
    """Another minor version: a real ``python3.M`` on PATH when there is one, else the host's."""
    major, minor = sys.version_info[:2]
    for other in (minor - 1, minor + 1):
        pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
        candidates = [f"python{major}.{other}"]
        candidates += sorted(map(str, pyenv.glob(f"{major}.{other}.*/bin/python{major}.{other}")))
        for candidate in candidates:
            found = _probe_interpreter(candidate)
            if found is not None:
                return found
    host = host_python()
    return PythonStandIn(f"{major}.{minor - 1}.0", host.executable, real=False)


def _probe_interpreter(command: str) -> PythonStandIn | None:
    """Ask ``command`` for its base executable and version (pyenv shims may be on PATH)."""
    if shutil.which(command) is None:
        return None
    probe = "import sys; print(sys._base_executable, '.'.join(map(str, sys.version_info[:3])))"
    try:
        result = subprocess.run(
            [command, "-c", probe], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    executable, version = result.stdout.split()
    return PythonStandIn(version, Path(executable).resolve(), real=True)


# Packages in the standard channel and what a test uses them for.
CONFLICT_PAIR = ("tinyleft", "tinyright")  # need tinyfoo 1.* and tinyfoo >=2: unsolvable together
OTHER_PLATFORM = "osx-arm64"
OTHER_PLATFORM_ONLY = "tinymac"  # only in osx-arm64: "missing for this platform" elsewhere


def standard_packages(python: PythonStandIn, other: PythonStandIn) -> list[CondaPackage]:
    """The fixture's channel: two pythons, tinyfoo 1.0/2.0, tinybar, a CLI, a conflict, tinymac."""
    return [
        python_package(python),
        python_package(other),
        # conda environment.yml files list "pip"; its sub-list is installed by uv, so a marker
        CondaPackage("pip", "24.0", {"share/runenv-test/pip.txt": "stand-in\n"}, ["python"]),
        python_module_package("tinyfoo", "1.0"),
        python_module_package("tinyfoo", "2.0"),
        python_module_package(
            "tinybar", "1.0", ["tinyfoo >=2"], "import tinyfoo\nFOO_VERSION = tinyfoo.VERSION\n"
        ),
        cli_package("tinycli", "1.0"),
        cli_package("tinyleft", "1.0", ["tinyfoo 1.*"]),
        cli_package("tinyright", "1.0", ["tinyfoo >=2"]),
        CondaPackage(
            OTHER_PLATFORM_ONLY,
            "1.0",
            {"share/tinymac.txt": "mac only\n"},
            subdir=OTHER_PLATFORM,
            noarch=None,
        ),
    ]


def build_standard_channel(root: Path) -> CondaChannel:
    """Build the standard channel at ``root``."""
    python, other = host_python(), other_python()
    build_channel(root, standard_packages(python, other))
    return CondaChannel(root, python, other)


if __name__ == "__main__":
    if sys.argv[1] == "--index":  # build_channel's child
        _index_and_exit(Path(sys.argv[2]))
    # python tests/conda_channel.py DIR: build the standard channel to look at
    print(build_standard_channel(Path(sys.argv[1]).resolve()).url)
