"""The overlay: what of the cluster's Python a Ray worker needs inside an isolated env.

A Ray worker is ``<env's python> default_worker.py``: it must import Ray (compiled for the
cluster's Python) and what Ray needs, and runenv's worker API — and nothing else of the cluster's
Python. The env's venv stays untouched (it is a shared cache entry, also used by the embedded
engine). Instead, once per node and cluster Python, an *overlay* cache entry holds:

- ``site/``: symlinks to the top-level packages and ``.dist-info`` of the closure of the ``ray``
  distribution's requirements (with the extras that are installed, e.g. ``[default]``), plus
  runenv's worker API: ``runenv``, ``cloudpickle`` and ``uv`` (its binary in ``site/bin``);
- ``hook/sitecustomize.py``: on startup, appends ``site/`` to ``sys.path`` with
  ``site.addsitedir`` — *after* the venv's site-packages, so the env's own versions win — then
  hands over to the next ``sitecustomize`` on the path, if any (the env's or the user's).

Only ``hook/`` goes on the worker's PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata as metadata
import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from runenv.cache import Entry, ResourceCache
from runenv.deadline import Deadline
from runenv.digests import key_of

KIND = "ray-overlay"
LAYOUT = 1  # bump when what an overlay holds changes: a new key, a new entry
ROOTS = ("ray",)
# runenv's worker API: what a task or actor started by runenv's driver imports besides Ray
# (uv: a task that calls the API with a new pip/uv env locks it).
WORKER_API = ("runenv", "cloudpickle", "uv")
# Distributions whose programs go in ``site/bin`` (where ``uv.find_uv_bin`` looks for uv).
PROGRAMS_OF = ("uv",)

SITECUSTOMIZE = '''\
"""Written by runenv's Ray plugin: the cluster's Ray, after this env's own packages."""
import site

site.addsitedir({site!r})


def _next_sitecustomize():
    """Run the next sitecustomize on the path (the env's or the user's), as if it were first."""
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    path = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)


_next_sitecustomize()
'''


@dataclass(frozen=True)
class Overlay:
    entry: Entry

    @property
    def site(self) -> Path:
        return self.entry.path / "site"

    @property
    def hook(self) -> Path:
        """The directory to put on PYTHONPATH: it holds only ``sitecustomize.py``."""
        return self.entry.path / "hook"


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str
    links: tuple[tuple[str, Path], ...]  # (name in the overlay, what it links to)

    @property
    def targets(self) -> list[Path]:
        return [target for _, target in self.links]


def acquire(deadline: Deadline, cache: ResourceCache | None = None) -> Overlay:
    """This node's overlay for the running (cluster) Python, built if missing; leased."""
    distributions = _closure_of_this_python()
    key = key_of(
        {
            "layout": LAYOUT,
            "python": [sys.executable, platform.python_version()],
            "distributions": [[d.name, d.version, *map(str, d.targets)] for d in distributions],
        }
    )

    def build(staging: Path) -> dict[str, object]:
        _link_all(distributions, staging / "site")
        hook = staging / "hook"
        hook.mkdir()
        final_site = (cache or ResourceCache()).entry_path(KIND, key) / "site"
        (hook / "sitecustomize.py").write_text(SITECUSTOMIZE.format(site=str(final_site)))
        pins = [f"{d.name}=={d.version}" for d in distributions]
        ray = next((pin for pin in pins if pin.startswith("ray==")), "ray")
        summary = f"{ray} and {len(pins) - 1} more for Ray's workers, of {sys.executable}"
        return {"python": sys.executable, "packages": [summary], "distributions": pins}

    return Overlay((cache or ResourceCache()).acquire(KIND, key, build, deadline))


def warm_up() -> None:
    """Compute what the overlay holds ahead of the first env (best effort)."""
    with contextlib.suppress(Exception):
        _closure_of_this_python()


@functools.cache
def _closure_of_this_python() -> tuple[Distribution, ...]:
    """Computed once per process (~0.4 s): the runtime env agent's Python does not change."""
    return tuple(closure())


def closure(roots: Iterable[str] = ROOTS, extra: Iterable[str] = WORKER_API) -> list[Distribution]:
    """The installed distributions ``roots`` need (with their installed extras), and ``extra``."""
    installed: dict[str, metadata.Distribution] = {
        canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()
    }
    extras_of: dict[str, set[str]] = {}
    pending: list[tuple[str, set[str] | None]] = [(name, None) for name in roots]
    while pending:
        name, wanted = pending.pop()
        key = canonicalize_name(name)
        found = installed.get(key)
        if found is None:
            continue  # a requirement that is not installed: not needed by what is
        extras = _installed_extras(found, installed) if wanted is None else wanted
        if key in extras_of and extras <= extras_of[key]:
            continue
        extras_of[key] = extras_of.get(key, set()) | extras
        pending += [(r.name, set(r.extras)) for r in _needed(found, extras_of[key])]
    names = sorted({*extras_of, *map(canonicalize_name, extra)})
    return [_describe(installed[name]) for name in names if name in installed]


def _needed(dist: metadata.Distribution, extras: set[str]) -> list[Requirement]:
    environments = [{"extra": extra} for extra in ("", *sorted(extras))]
    needed = []
    for text in dist.requires or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate(env) for env in environments):
            needed.append(requirement)
    return needed


def _installed_extras(
    dist: metadata.Distribution, installed: dict[str, metadata.Distribution]
) -> set[str]:
    """The extras of ``dist`` whose every requirement is installed (``ray[default]``...)."""
    requirements = [Requirement(text) for text in dist.requires or []]
    extras = set()
    for extra in dist.metadata.get_all("Provides-Extra") or []:
        own = [
            r
            for r in requirements
            if r.marker is not None
            and r.marker.evaluate({"extra": extra})
            and not r.marker.evaluate({"extra": ""})
        ]
        if own and all(canonicalize_name(r.name) in installed for r in own):
            extras.add(extra)
    return extras


def _describe(dist: metadata.Distribution) -> Distribution:
    """Its top-level entries (packages, modules, .dist-info, .libs, .pth) and where they are."""
    location = Path(str(dist.locate_file(""))).resolve()
    name = canonicalize_name(dist.metadata["Name"])
    top_level = {
        file.parts[0]
        for file in dist.files or []
        if file.parts and file.parts[0] not in ("..", "__pycache__")
    }
    links = [(entry, location / entry) for entry in sorted(top_level)]
    if name in PROGRAMS_OF:
        programs = [file for file in dist.files or [] if file.parts[:1] == ("..",)]
        links += [(f"bin/{file.name}", (location / file).resolve()) for file in programs]
    if name == "runenv":  # an editable install is a .pth to the source tree: link the package
        package = Path(__file__).resolve().parent.parent
        links = [(entry, target) for entry, target in links if not entry.endswith(".pth")]
        links.append((package.name, package))
    return Distribution(name, dist.version, tuple(links))


def _link_all(distributions: Iterable[Distribution], site: Path) -> None:
    site.mkdir()
    for dist in distributions:
        for name, target in dist.links:
            link = site / name
            if (target.exists() or target.is_symlink()) and not os.path.lexists(link):
                link.parent.mkdir(exist_ok=True)
                link.symlink_to(target)
