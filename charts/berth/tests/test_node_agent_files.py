"""Checks of the files the chart's image and host install depend on:
config/node-agent-entrypoint.sh (run for real), config/Containerfile and
config/berth.service (read; no container engine or systemd boot here)."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parents[1]
REPO = CHART_DIR.parents[1]
CONFIG = REPO / "config"
ENTRYPOINT = CONFIG / "node-agent-entrypoint.sh"


# ------------------------------------------------------------ entrypoint

@pytest.fixture
def fake_node(tmp_path):
    src = tmp_path / "image-cni"
    dst = tmp_path / "host-opt-cni-bin"
    src.mkdir()
    for name in ("bridge", "host-local", "loopback", "portmap"):
        plugin = src / name
        plugin.write_text(f"#!/bin/sh\necho {name}\n")
        plugin.chmod(0o755)
    (src / "README").write_text("not a plugin\n")  # not executable: skipped
    dst.mkdir()
    (dst / "bridge").write_text("host's own bridge\n")  # must not be overwritten
    (dst / "bridge").chmod(0o755)
    berthd = tmp_path / "berthd"
    berthd.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$0.args"\n')
    berthd.chmod(0o755)
    return src, dst, berthd


def run_entrypoint(src, dst, berthd, *args, install="true"):
    env = dict(os.environ, CNI_PLUGIN_SRC=str(src), CNI_BIN_DIR=str(dst),
               BERTHD=str(berthd), BERTH_INSTALL_CNI_PLUGINS=install)
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True,
                          text=True, timeout=30)


def test_entrypoint_installs_absent_plugins_and_execs_berthd(fake_node):
    src, dst, berthd = fake_node
    done = run_entrypoint(src, dst, berthd, "--config", "/etc/berth/berth.yaml")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in dst.iterdir()) == ["bridge", "host-local", "loopback",
                                                      "portmap"]
    assert (dst / "bridge").read_text() == "host's own bridge\n"
    assert (dst / "portmap").read_text() == (src / "portmap").read_text()
    assert os.access(dst / "portmap", os.X_OK)
    assert "installed 3 CNI plugin(s)" in done.stderr
    args = Path(str(berthd) + ".args").read_text().splitlines()
    assert args == ["--config", "/etc/berth/berth.yaml"]

    again = run_entrypoint(src, dst, berthd, "--config", "x")
    assert again.returncode == 0 and "installed 0 CNI plugin(s)" in again.stderr


def test_entrypoint_install_can_be_disabled(fake_node):
    src, dst, berthd = fake_node
    done = run_entrypoint(src, dst, berthd, install="false")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in dst.iterdir()] == ["bridge"]
    assert Path(str(berthd) + ".args").exists()


def test_entrypoint_refuses_a_bad_switch(fake_node):
    src, dst, berthd = fake_node
    done = run_entrypoint(src, dst, berthd, install="maybe")
    assert done.returncode == 2
    assert not Path(str(berthd) + ".args").exists()


def test_chart_passes_the_entrypoint_its_switches():
    template = (CHART_DIR / "templates" / "daemonset.yaml").read_text()
    script = ENTRYPOINT.read_text()
    for variable in ("BERTH_INSTALL_CNI_PLUGINS", "CNI_BIN_DIR"):
        assert variable in template and variable in script


# ---------------------------------------------------------- Containerfile

def test_containerfile_stages_and_inputs():
    text = (CONFIG / "Containerfile").read_text()
    assert "docker build -f config/Containerfile" in text
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert froms == [("rust:1-bookworm", "build"), ("debian:bookworm-slim", "")]
    assert re.search(r"^RUN bash config/build\.sh", text, re.M)
    assert "target/dist/berthd" in text
    build = (CONFIG / "build.sh").read_text()
    # Both binaries, dist profile, linked statically (crt-static on their own crate).
    assert re.search(r"for bin in berthd berth-monitor; do", build)
    assert re.search(
        r'cargo rustc --profile dist --locked --bin "\$bin" -- -C target-feature=\+crt-static',
        build,
    )
    for package in ("crun", "containernetworking-plugins", "iptables", "ca-certificates"):
        assert re.search(rf"apt-get install[^\n]*(\\\n[^\n]*)*\b{re.escape(package)}\b", text), package
    assert re.search(r"^COPY --from=build \S+ /usr/local/bin/berthd$", text, re.M)
    # The small monitor binary sits next to berthd, where berthd looks for it.
    assert re.search(r"^COPY --from=build \S+ /usr/local/bin/berth-monitor$", text, re.M)
    assert re.search(r"^COPY config/berth.yaml /etc/berth/berth.yaml$", text, re.M)
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    assert entrypoint[-1] == "/usr/local/bin/node-agent-entrypoint.sh"
    # Every path COPY takes from the build context exists in the repository.
    sources = [s for s in re.findall(r"^COPY (?!--from)(\S+) \S+$", text, re.M) if s != "."]
    assert "config/node-agent-entrypoint.sh" in sources
    missing = [s for s in sources if not (REPO / s).exists()]
    if missing == ["config/berth.yaml"]:
        pytest.skip("config/berth.yaml (the default configuration) is not written yet")
    assert missing == []


def test_default_berth_yaml_fits_the_chart_schema():
    default = CONFIG / "berth.yaml"
    if not default.exists():
        pytest.skip("config/berth.yaml (the default configuration) is not written yet")
    config = yaml.safe_load(default.read_text()) or {}
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    known = set(schema["properties"]["config"]["properties"])
    assert set(config) <= known, f"keys the chart's schema does not know: {set(config) - known}"


# ----------------------------------------------------------- systemd unit

def test_systemd_unit():
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # keys are case-sensitive
    unit.read(CONFIG / "berth.service")
    service = unit["Service"]
    assert service["Type"] in ("exec", "simple")
    assert service["ExecStart"] == "/usr/local/bin/berthd --config /etc/berth/berth.yaml"
    assert service["KillMode"] == "process"
    assert service["Delegate"] == "yes"
    assert service["Restart"] == "always"
    assert service["OOMScoreAdjust"] == "-999"
    assert int(service["LimitNOFILE"]) >= 65536
    assert "network-online.target" in unit["Unit"]["After"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"
