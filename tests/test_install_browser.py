"""``scripts/install_browser.sh`` (run by ``scripts/test.sh``): apt's hundreds of lines stay in a log file; the user
sees one line, or the log's last lines when the install fails. apt-get is replaced by a stand-in that prints what a
real install prints."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOISY_APT = """#!/bin/sh
for i in $(seq 1 450); do echo "Setting up libfoo$i (1.0) ..."; done
[ "$1" = install ] && [ -n "$FAIL" ] && { echo "E: Unable to locate package chromium"; exit 100; }
exit 0
"""


def _run(tmp_path: Path, fail: bool) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("env", "mktemp", "rm", "tail", "seq", "sh"):
        (bin_dir / tool).unlink(missing_ok=True)
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "apt-get").write_text(NOISY_APT)
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")  # as root, no chromium on PATH
    for name in ("apt-get", "id"):
        (bin_dir / name).chmod(0o755)
    env = {"PATH": str(bin_dir), "TMPDIR": str(tmp_path), **({"FAIL": "1"} if fail else {})}
    return subprocess.run([shutil.which("bash"), str(ROOT / "scripts" / "install_browser.sh")], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_a_successful_install_prints_two_lines(tmp_path):
    result = _run(tmp_path, fail=False)
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 2 and lines[-1] == "installed chromium and chromium-driver", lines
    assert not list(tmp_path.glob("apt-chromium.*.log"))


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_a_failed_install_shows_the_end_of_the_log(tmp_path):
    result = _run(tmp_path, fail=True)
    assert result.returncode == 0  # the suite still runs; the browser tests skip themselves
    assert result.stderr.startswith("warning: apt-get could not install chromium")
    assert result.stderr.strip().splitlines()[-1] == "E: Unable to locate package chromium"
    assert len(result.stderr.strip().splitlines()) == 6 and len(result.stdout.strip().splitlines()) == 1
