"""The set-up the README promises: one list of pins, shared by pip and conda; CI runs the README's test command."""

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


def constraint_pins() -> dict[str, str]:
    lines = (REPO / "requirements" / "constraints.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    return {name.lower(): version for name, version in pins.items()}


def test_environment_yml_pins_equal_the_constraints_file():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    conda_pins = {name.lower(): version for name, version in (p.split("==") for p in pip_section)}
    assert conda_pins == constraint_pins()
    assert constraint_pins()["torch"] == "2.14.1" and constraint_pins()["torchvision"] == "0.29.1"


def test_every_dependency_is_pinned():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [dep for extra in project["optional-dependencies"].values() for dep in extra]
    names = {re.split(r"[<>=\[ ;]", dep)[0].lower() for dep in deps}
    assert names <= set(constraint_pins()), names - set(constraint_pins())


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make reproduce-cifar" in readme
    assert re.search(r"^make test$", (REPO / ".ci" / "run").read_text(), re.M)
