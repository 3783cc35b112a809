"""A soak: runs that vandalise their env and working dir, side by side with runs using them.

Eight processes at once — `runenv run`, embedded jobs and drivers running tasks — each start
runs of one env (a working_dir and a pip package) a few times over. Every run first looks at
what it was given, then tries to change it: its working dir (its own copy: allowed), and its
venv (read-only, and sealed as root: refused). Afterwards no run saw another's changes and
every cache entry verifies clean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import can_seal
from wheels import build_wheel

RUNENV = [sys.executable, "-m", "runenv"]
ROUNDS = 3
TIMEOUT_S = 300

VANDAL = """
import json, os, runenv_demo_a

def main():
    module = runenv_demo_a.__file__
    seen = {
        "data": open("data.txt").read(),
        "helper": os.path.exists("helper.txt"),
        "module_clean": "POISON" not in open(module).read(),
        "env_writes": [],
    }
    open("data.txt", "w").write("vandalised by %d\\n" % os.getpid())
    os.remove("helper.txt")
    if os.environ.get("ATTACK_ENV") == "1":
        added = os.path.join(os.path.dirname(module), "added_%d.py" % os.getpid())
        for attack in (lambda: os.chmod(module, 0o644), lambda: open(module, "a").write("POISON"),
                       lambda: open(added, "w").write("POISON")):
            try:
                attack()
                seen["env_writes"].append("written")
            except OSError:
                seen["env_writes"].append("refused")
    return seen

if __name__ == "__main__":
    print("REPORT " + json.dumps(main()), flush=True)
"""

DRIVER = """
import json, sys, runenv
runenv.init(num_cpus=2)
env = json.load(open(sys.argv[1]))

@runenv.remote(runtime_env=env)
def vandalise():
    import vandal
    return vandal.main()

print("REPORT " + json.dumps(runenv.get(vandalise.remote())), flush=True)
runenv.shutdown()
"""


@pytest.fixture
def setup(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "vandal.py").write_text(VANDAL)
    (project / "data.txt").write_text("original\n")
    (project / "helper.txt").write_text("needed\n")
    (tmp_path / "driver.py").write_text(DRIVER)
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "runenv-demo-a", "1.0")
    env_file = tmp_path / "env.json"
    options = ["--no-index", "--find-links", str(wheels)]
    pip = {"packages": ["runenv-demo-a"], "pip_install_options": options}
    env_file.write_text(json.dumps({"working_dir": str(project), "pip": pip}))
    protected = os.geteuid() != 0 or can_seal(tmp_path)
    environ = {**os.environ, "RUNENV_HOME": str(tmp_path / "home"), "ATTACK_ENV": "1"}
    if not protected:  # root where the kernel refuses sealing: writes would succeed
        environ["ATTACK_ENV"] = "0"
    environ.pop("RUNENV_ADDRESS", None)
    return environ, env_file, tmp_path


def one_run(kind: str, environ: dict[str, str], env_file: Path, where: Path) -> dict[str, object]:
    if kind == "run":
        command = [*RUNENV, "run", "--runtime-env", str(env_file), "--", "python", "vandal.py"]
    elif kind == "job":
        command = [*RUNENV, "job", "submit", "--runtime-env", str(env_file), "--"]
        command += ["python", "vandal.py"]
    else:
        command = [sys.executable, str(where / "driver.py"), str(env_file)]
    done = subprocess.run(
        command, capture_output=True, text=True, env=environ, cwd=where, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, f"{kind}: {done.stderr[-2000:]}"
    (report,) = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    found: dict[str, object] = json.loads(report.removeprefix("REPORT "))
    return found


def test_vandals_side_by_side_change_nothing_another_run_sees(
    setup: tuple[dict[str, str], Path, Path],
) -> None:
    environ, env_file, where = setup
    kinds = ["run", "run", "run", "job", "job", "job", "tasks", "tasks"]
    first = one_run("run", environ, env_file, where)  # builds the entries
    with ThreadPoolExecutor(len(kinds)) as pool:
        rounds = [
            pool.submit(lambda kind=kind: [one_run(kind, environ, env_file, where)
                                           for _ in range(ROUNDS)])
            for kind in kinds
        ]  # fmt: skip
        reports = [first] + [report for future in rounds for report in future.result()]
    assert len(reports) == 1 + len(kinds) * ROUNDS
    for report in reports:
        assert report["data"] == "original\n" and report["helper"] is True, report
        assert report["module_clean"] is True, report
        if environ["ATTACK_ENV"] == "1":
            assert report["env_writes"] == ["refused"] * 3, report
    verify = subprocess.run(
        [*RUNENV, "env", "verify", "--full"], capture_output=True, text=True, env=environ
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.count(" ok") >= 3  # the working dir, the lock, the venv
    gc = subprocess.run([*RUNENV, "env", "gc"], capture_output=True, text=True, env=environ)
    assert gc.returncode == 0, gc.stderr
    runs = Path(environ["RUNENV_HOME"]) / "runtime_resources" / "runs"
    assert list(runs.iterdir()) == []  # every run is over: every copy was swept
