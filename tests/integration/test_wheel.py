"""The product as a platform team installs it: a wheel, in a fresh virtualenv outside the
checkout, run from a folder that is not the checkout.

The wheel is built from the project's files (``pyproject.toml``, ``README.md`` and
``services/consentgate``, copied as a fresh clone holds them) without build isolation, and
installed with ``--no-deps`` into a virtualenv that sees this environment's third-party
packages (the same pinned versions ``pip install .`` resolves) but not its editable
``consentgate`` or ``consentgate_dev``. What it must show: the schemas are package data, the
development stack is not in it, and ``schemas check``, ``policy check`` and a router on the
real broker work from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.router_harness import RouterEnv

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PRODUCT_FILES = ("pyproject.toml", "README.md", "LICENSE")


class Installed:
    """The built wheel and the virtualenv it is installed in."""

    def __init__(self, wheel: Path, venv: Path, cwd: Path) -> None:
        self.wheel = wheel
        self.venv = venv
        self.cwd = cwd  # a folder outside the checkout
        self.consentgate = venv / "bin" / "consentgate"
        self.python = venv / "bin" / "python"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTGATE_SCHEMAS")}
        env.pop("PYTHONPATH", None)
        return subprocess.run(
            [str(self.consentgate), *args],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _copy_project(dest: Path) -> None:
    for name in PRODUCT_FILES:
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    shutil.copytree(
        REPO / "services" / "consentgate",
        dest / "services" / "consentgate",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("wheel")
    src, dist, venv, cwd = (work / n for n in ("src", "dist", "venv", "elsewhere"))
    for folder in (src, dist, cwd):
        folder.mkdir()
    _copy_project(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("consentgate-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # this environment's third-party packages, without its own distributions (their
    # editable hooks and their metadata, entry points included)
    third_party = work / "third-party"
    third_party.mkdir()
    ours = ("consentgate", "__editable__", "_consentgate", "__editable___consentgate")
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if not entry.name.startswith(ours) and entry.suffix != ".pth":
            (third_party / entry.name).symlink_to(entry)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "third_party.pth").write_text(f"{third_party}\n")
    done = subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield Installed(wheel, venv, cwd)


def test_the_wheel_holds_the_product_and_its_schemas_and_nothing_of_the_dev_stack(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"consentgate", "consentgate-0.1.0.dist-info"}, tops
    assert "consentgate/schemas/browsing_event.avsc" in names
    assert any(n.startswith("consentgate/schemas/history/") for n in names)
    assert "consentgate/py.typed" in names
    for dev in ("broker", "demo", "registry"):
        assert not [n for n in names if f"/{dev}/" in n or n.endswith(f"/{dev}.py")], dev
    assert not [n for n in names if n.endswith((".xml", ".jar"))]


def test_the_wheel_s_console_renders_its_shipped_templates(installed: Installed) -> None:
    code = (
        "from consentgate.console import render\n"
        "page = render.render(\n"
        "    'login.html', {'csrf_token': 't', 'error': None, 'nav': None, 'next': '/console'}\n"
        ")\n"
        "assert 'action=\"/console/login\"' in page.body.decode()\n"
        "assert 'font-family' in render.stylesheet()\n"
        "print(render.__file__)\n"
    )
    done = subprocess.run(
        [str(installed.python), "-c", code],
        cwd=installed.cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(installed.venv)), done.stdout


def test_from_the_wheel_dev_code_is_absent_and_so_are_its_commands(installed: Installed) -> None:
    probe = subprocess.run(
        [str(installed.python), "-c", "import consentgate, consentgate_dev"],
        cwd=installed.cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "No module named 'consentgate_dev'" in probe.stderr, probe.stderr
    where = subprocess.run(
        [str(installed.python), "-c", "import consentgate; print(consentgate.__file__)"],
        cwd=installed.cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(installed.venv)), where
    usage = installed.run("--help")
    assert usage.returncode == 0, usage.stderr
    assert "router" in usage.stdout
    for dev in ("broker", "demo", "registry"):
        assert f"    {dev} " not in usage.stdout, usage.stdout
    refused = installed.run("broker", "start")
    assert refused.returncode == 2
    assert "invalid choice: 'broker'" in refused.stderr


def test_schemas_check_reads_the_schemas_shipped_in_the_package(installed: Installed) -> None:
    done = installed.run("schemas", "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"schemas in {installed.venv}" in done.stdout, done.stdout
    assert "schemas check passed" in done.stdout


def test_policy_check_checks_field_names_against_the_shipped_schemas(
    installed: Installed,
) -> None:
    done = installed.run("policy", "check", str(REPO / "deploy" / "policy.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "schemas not loaded" not in done.stdout + done.stderr
    assert "field names not checked" not in done.stdout + done.stderr


def test_the_wheel_s_router_routes_on_the_real_broker(
    installed: Installed, router_env: RouterEnv
) -> None:
    env = router_env
    env.consent("wheel-user", "GRANT", "analytics")
    router = env.start_router(command=[str(installed.consentgate)])
    ids = env.browse("wheel-user", 2)
    denied = env.browse("nobody", 1)
    assert set(env.sink_event_ids(env.plan.analytics_topic)) == set(ids)
    decisions = env.decisions_by_event(3)
    assert set(decisions[denied[0]].values()) == {"no_consent_record"}
    assert router.proc.args[0] == str(installed.consentgate)
