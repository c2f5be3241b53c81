"""Finding (and, when allowed, installing) the Prometheus stack's binaries."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Debian/Ubuntu package for each binary; none of them starts a service on install in a container.
DEBIAN_PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
}
# Upstream tarballs name Alertmanager's binary differently from Debian.
ALTERNATIVE_NAMES = {"prometheus-alertmanager": ("alertmanager",)}


class MissingToolError(RuntimeError):
    pass


def find_tool(name: str) -> str | None:
    for candidate in (name, *ALTERNATIVE_NAMES.get(name, ())):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def ensure_tools(names: list[str], allow_install: bool, say=print) -> dict[str, str]:
    """Return name → path; install missing ones with apt-get when allowed, else explain how."""
    missing = [name for name in names if find_tool(name) is None]
    if missing:
        packages = sorted({DEBIAN_PACKAGES[name] for name in missing})
        command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
        if not allow_install:
            raise MissingToolError(
                f"missing {', '.join(missing)}; install with: sudo {' '.join(command)} (or put the binaries on PATH)"
            )
        if shutil.which("apt-get") is None:
            raise MissingToolError(
                f"missing {', '.join(missing)} and no apt-get here; install Prometheus {', '.join(packages)} "
                "from https://prometheus.io/download/ and put the binaries on PATH"
            )
        prefix = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-q"], command):
            say(f"  running: {' '.join(prefix + step)}")
            result = subprocess.run(prefix + step, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if result.returncode != 0:
                tail = "\n".join(result.stdout.splitlines()[-15:])
                raise MissingToolError(f"{' '.join(step)} failed (exit {result.returncode}):\n{tail}")
    found = {name: find_tool(name) for name in names}
    still_missing = [name for name, path in found.items() if path is None]
    if still_missing:
        raise MissingToolError(f"still missing after install: {', '.join(still_missing)}")
    return {name: path for name, path in found.items() if path is not None}


def bundle_root() -> Path:
    """The raylens checkout holding provisioning/ and the rule folders."""
    explicit = os.environ.get("RAYLENS_BUNDLE_DIR")
    candidates = [Path(explicit)] if explicit else []
    candidates += [Path(__file__).resolve().parents[3], Path.cwd()]
    for candidate in candidates:
        if (candidate / "provisioning" / "prometheus" / "prometheus.yml").is_file():
            return candidate
    raise MissingToolError(
        "cannot find the raylens bundle (provisioning/, recording-rules/); run from a raylens checkout "
        "installed with `pip install -e .`, or set RAYLENS_BUNDLE_DIR"
    )
