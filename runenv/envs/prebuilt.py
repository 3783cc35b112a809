"""Prebuilt envs (``config.share_env``): the first node that builds a venv shares it through
``upload_path``; other nodes of the same platform unpack it instead of installing.

What is shared is the venv without what ties it to one machine (the ``bin/python`` links to the
node's interpreter, ``pyvenv.cfg``): a deterministic zip, stored content-addressed as
``pkgs/<sha256>.zip`` and named by ``envs/<env key>-<platform>.json``. A node that finds it
downloads the archive, checks it against its digest, unpacks it with the usual bounds and
makes it a venv of its own interpreter (``uv venv --allow-existing``). Anything that does
not work out (no archive yet, a digest that does not match, limits) is said in the setup log and
the node installs as usual: sharing only ever saves time.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from runenv import store_layout
from runenv.digests import file_digest
from runenv.envs import archives, pylock
from runenv.envs.setup import Setup
from runenv.errors import RunenvError

if TYPE_CHECKING:
    from runenv.storage import Store

STEP = "prebuilt env"
# What ties a venv to the machine that made it: each node makes its own.
_LOCAL_NAMES = frozenset({"pyvenv.cfg", "lib64", ".lock", ".gitignore", "CACHEDIR.TAG"})
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def pointer_name(key: str) -> str:
    return f"{store_layout.ENVS_PREFIX}/{key}-{pylock.here()}.json"


def unpack_shared(key: str, store: Store, venv: Path, setup: Setup) -> bool:
    """Unpack the shared archive of env ``key`` as ``venv`` (which must not exist yet; the
    caller then makes it a venv of this node's interpreter); False when there is none or it
    cannot be used (the reason in the setup log)."""
    name = pointer_name(key)
    try:
        if not store.exists(name):
            return False
        with store.open(name) as stream:
            archive_name = str(json.loads(stream.read())["archive"])
        store_layout.claimed_digest(archive_name)
        setup.report("download", f"prebuilt env {key[:12]}")
        archive = archives.fetch(store.uri(archive_name), venv.parent, setup, STEP)
        with archives.as_setup_error(STEP, setup):
            from runenv.packaging import unpack

            setup.report("unpack", f"prebuilt env {key[:12]}")
            unpack(archive, venv)
    except (RunenvError, OSError, ValueError, KeyError) as error:
        reason = error.message if isinstance(error, RunenvError) else str(error)
        setup.log.write(f"{STEP} {store.uri(name)} not used: {reason}")
        setup.report("rebuilt", f"prebuilt env not used ({reason.splitlines()[0]})")
        shutil.rmtree(venv, ignore_errors=True)
        return False
    if archive.parent == venv.parent:
        archive.unlink(missing_ok=True)
    return True


def share(key: str, store: Store, venv: Path, setup: Setup) -> None:
    """Pack ``venv`` and put it in ``store`` for the other nodes of this platform (a failure is
    logged, never raised: this node's env is built already)."""
    name = pointer_name(key)
    archive = venv.parent / "prebuilt.zip"
    try:
        if store.exists(name):
            return
        setup.report("upload", f"prebuilt env {key[:12]}")
        _pack(venv, archive)
        archive_name = store_layout.as_is_name(file_digest(str(archive)), "env.zip")
        store.put_file(archive, archive_name, move=True)
        pointer = venv.parent / "prebuilt.json"
        pointer.write_text(json.dumps({"archive": archive_name, "platform": pylock.here()}))
        store.put_file(pointer, name, move=True)
    except (RunenvError, OSError) as error:
        reason = error.message if isinstance(error, RunenvError) else str(error)
        setup.log.write(f"{STEP}: not shared: {reason}")
    finally:
        archive.unlink(missing_ok=True)
        (venv.parent / "prebuilt.json").unlink(missing_ok=True)


def _pack(venv: Path, archive: Path) -> None:
    """A deterministic zip of the venv's files, without the machine's own (see _LOCAL_NAMES,
    and the interpreter links in bin/); other links are stored as what they point to."""
    files = []
    for root, directories, names in os.walk(venv):
        relative_root = Path(root).relative_to(venv)
        directories[:] = sorted(
            d for d in directories if not (root == str(venv) and d in _LOCAL_NAMES)
        )
        for filename in names:
            relative = relative_root / filename
            if _is_local(relative, Path(root) / filename):
                continue
            files.append(relative)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as output:
        for relative in sorted(files):
            path = venv / relative
            if not path.is_file():
                continue  # a dangling link
            info = zipfile.ZipInfo(relative.as_posix(), _ZIP_TIME)
            executable = os.stat(path).st_mode & stat.S_IXUSR
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as source, output.open(info, "w") as target:
                shutil.copyfileobj(source, target, 1 << 20)


def _is_local(relative: Path, path: Path) -> bool:
    if len(relative.parts) == 1 and relative.name in _LOCAL_NAMES:
        return True
    return relative.parts[0] == "bin" and relative.name.startswith("python") and path.is_symlink()
