"""The pip path (requirements.txt) and the conda path (environment.yml) pin the same versions."""

import re

import yaml

from bfutils import paths


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_requirements_and_environment_agree():
    req = _pins((paths.ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = _pins(pip_section)
    assert req, "requirements.txt pins nothing"
    assert req == conda


def test_every_requirement_is_pinned_exactly():
    for line in (paths.ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert "==" in line, f"requirements.txt: {line!r} is not pinned with =="


def test_pyproject_names_match_requirements():
    import tomllib

    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    names = {d.lower().replace("_", "-") for d in project["dependencies"]}
    req = _pins((paths.ROOT / "requirements.txt").read_text().splitlines())
    missing = names - set(req)
    assert not missing, f"pyproject dependencies without a pin in requirements.txt: {missing}"
