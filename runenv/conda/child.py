"""``python -m runenv.conda.child``: one py-rattler solve or install, in a process of its own.

py-rattler 0.22-0.28 can crash the interpreter at exit (SIGSEGV/SIGABRT while its runtime's
threads are torn down) in a process that solved or fetched, unless every rattler object was
released first. So rattler never runs in a runenv process: this child reads one request (JSON on
stdin), writes one result (JSON on stdout), flushes, and leaves with ``os._exit`` — no
finalization, so nothing is left to crash, and whatever the exit status the parent judges by
the result it read. The child is killed with its process group when the setup's deadline passes.

Results: ``{"ok": true, ...}``, or ``{"ok": false, "kind": KIND, "message": ...}`` with KIND one
of ``unsolvable``, ``missing``, ``platform`` (only in other platforms' subdirs), ``channel``
(unreachable or not a channel), ``install``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import traceback
from typing import Any

OTHER_PLATFORMS = ("linux-64", "linux-aarch64", "osx-64", "osx-arm64", "win-64")
_NO_CANDIDATES = re.compile(r"No candidates were found for ([^\s.]+)")


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    try:
        result = asyncio.run(_handle(request))
    except Exception as error:  # a result for every failure: the parent reads no traceback
        result = _failure(request, error)
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)


async def _handle(request: dict[str, Any]) -> dict[str, Any]:
    if request["op"] == "solve":
        return await _solve(request)
    return await _install(request)


async def _solve(request: dict[str, Any]) -> dict[str, Any]:
    from rattler import Gateway, Subdir, VirtualPackage, solve

    gateway = Gateway(cache_dir=request["repodata_cache"])
    platform = request["platform"]
    records = await solve(
        sources=request["channels"],
        specs=request["specs"],
        gateway=gateway,
        platforms=[Subdir(platform), Subdir("noarch")],
        virtual_packages=VirtualPackage.detect(),
    )
    return {"ok": True, "packages": [_package(record) for record in records]}


def _package(record: Any) -> dict[str, Any]:
    return {
        "name": record.name.normalized,
        "version": str(record.version),
        "build": str(record.build),
        "build_number": record.build_number,
        "subdir": record.subdir,
        "noarch": _noarch(record.noarch),
        "depends": list(record.depends),
        "constrains": list(record.constrains),
        "url": record.url,
        "channel": record.channel,
        "file_name": record.file_name,
        "sha256": record.sha256.hex() if record.sha256 else None,
        "md5": record.md5.hex() if record.md5 else None,
        "size": record.size,
    }


def _noarch(noarch: Any) -> str | None:
    if noarch.python:
        return "python"
    return "generic" if noarch.generic else None


async def _install(request: dict[str, Any]) -> dict[str, Any]:
    from rattler import BuildString, Config, PackageRecord, RepoDataRecord, Subdir, install

    records = []
    for package in request["packages"]:
        record = PackageRecord(
            name=package["name"],
            version=package["version"],
            build=BuildString(package["build"]),
            build_number=package["build_number"],
            subdir=package["subdir"],
            noarch=package["noarch"],
            depends=package["depends"],
            constrains=package["constrains"],
            sha256=bytes.fromhex(package["sha256"]),
            md5=bytes.fromhex(package["md5"]) if package["md5"] else None,
            size=package["size"],
        )
        records.append(
            RepoDataRecord(record, package["file_name"], package["url"], package["channel"])
        )
    hard_links = "true" if request["hard_links"] else "false"
    await install(
        records,
        target_prefix=request["prefix"],
        cache_dir=request["package_cache"],
        alternative_target_prefix=request["final_prefix"],
        platform=Subdir(request["platform"]),
        installed_packages=[],
        show_progress=False,
        execute_link_scripts=False,
        config=Config.from_toml(f"allow-hard-links = {hard_links}\nallow-symbolic-links = false\n"),
    )
    return {"ok": True}


def _failure(request: dict[str, Any], error: Exception) -> dict[str, Any]:
    kind_name = type(error).__name__
    message = str(error).strip() or kind_name
    if request["op"] == "install":
        return {"ok": False, "kind": "install", "message": message}
    if kind_name == "SolverError":
        missing = _NO_CANDIDATES.findall(message)
        if missing:
            elsewhere = _other_platforms(request, missing)
            if elsewhere:
                return {"ok": False, "kind": "platform", "message": message, "found": elsewhere}
            return {"ok": False, "kind": "missing", "message": message, "names": missing}
        return {"ok": False, "kind": "unsolvable", "message": message}
    if kind_name in ("GatewayError", "FetchRepoDataError", "ChannelError", "ParseChannelError"):
        return {"ok": False, "kind": "channel", "message": message}
    return {
        "ok": False,
        "kind": "error",
        "message": f"{kind_name}: {message}\n{traceback.format_exc()}",
    }


def _other_platforms(request: dict[str, Any], names: list[str]) -> dict[str, list[str]]:
    """Which of ``names`` the channels have for other platforms: {name: [subdir, ...]}."""
    from rattler import Gateway, Subdir

    async def query() -> dict[str, list[str]]:
        gateway = Gateway(cache_dir=request["repodata_cache"])
        found: dict[str, list[str]] = {}
        for subdir in OTHER_PLATFORMS:
            if subdir == request["platform"]:
                continue
            try:
                results = await gateway.query(
                    request["channels"], [Subdir(subdir)], names, recursive=False
                )
            except Exception:  # a channel without that subdir
                continue
            for records in results:
                for record in records:
                    found.setdefault(record.name.normalized, [])
                    if subdir not in found[record.name.normalized]:
                        found[record.name.normalized].append(subdir)
        return found

    try:
        return asyncio.run(query())
    except Exception:
        return {}


if __name__ == "__main__":
    main()
