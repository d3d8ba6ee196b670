"""The edge_agent role, for real: ansible-lint, then site.yml against localhost
(connection local) into a temporary prefix, with systemd steps switched off.

One module-scoped deployment is shared: it is installed at -vvv with --diff and
run a second time at -vvv; the tests below look at it, and the last one upgrades,
rolls back and removes it. Secrets come from an Ansible Vault file encrypted in
the test with a temporary password file; their canary values must appear in no
output, at any verbosity.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._tools import REPO, VENV_BIN, run, tool

pytestmark = pytest.mark.slow

ANSIBLE_DIR = REPO / "deploy" / "ansible"
SNMP_CANARY = "canary-snmp-5d1f0c7e"
KAFKA_CANARY = "canary-kafka-8b2a94c1"
#: the secrets after the canary test rotates them
ROTATED = ("canary-snmp-rotated-3c9e", "canary-kafka-rotated-71d0")
_RECAP = re.compile(r"^\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def _build_wheel(source: Path, out: Path) -> Path:
    uv = tool("uv")
    assert uv, "uv is in the dev environment"
    result = run([uv, "build", "--wheel", "--out-dir", str(out), str(source)], timeout=180)
    assert result.returncode == 0, result.stdout
    return next(out.glob("resmon-*.whl"))


def _source_copy_with_version(dest: Path, version: str) -> Path:
    """A copy of what the wheel is built from, with another version number."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for package in ("protocol", "snmpber", "edge_agent", "hub", "simulator", "resmon"):
        shutil.copytree(
            REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    pyproject = dest / "pyproject.toml"
    text, count = re.subn(
        r'^version = "[^"]+"$', f'version = "{version}"', pyproject.read_text(), flags=re.M
    )
    assert count == 1
    pyproject.write_text(text)
    return dest


@dataclass
class Deployment:
    """A temporary inventory, prefix and vault, and the outputs of every run so far."""

    root: Path
    version: str
    upgrade_version: str
    outputs: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> Path:
        return self.root / "prefix"

    @property
    def home(self) -> Path:
        return self.prefix / "opt" / "resmon-agent"

    @property
    def config_file(self) -> Path:
        return self.prefix / "etc" / "resmon" / "agent.yaml"

    @property
    def unit_file(self) -> Path:
        return self.prefix / "etc" / "systemd" / "system" / "resmon-agent.service"

    @property
    def buffer_dir(self) -> Path:
        return self.prefix / "var" / "lib" / "resmon" / "agent-buffer"

    @property
    def vault_file(self) -> Path:
        return self.root / "inventory" / "group_vars" / "edge_agents" / "vault.yml"

    def write_vault(self, snmp: str, kafka: str) -> None:
        self.vault_file.write_text(
            yaml.safe_dump({"vault_snmp_community": snmp, "vault_kafka_password": kafka})
        )
        result = self.ansible(
            "ansible-vault", "encrypt", "--vault-password-file", str(self.root / "vault-pass"),
            str(self.vault_file),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout
        assert self.vault_file.read_text().startswith("$ANSIBLE_VAULT;")

    def ansible(self, command: str, *args: str) -> Any:
        home = self.root / "ansible-home"
        return run(
            [tool(command) or command, *args],
            cwd=ANSIBLE_DIR,
            env={
                "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
                "ANSIBLE_HOME": str(home),
                "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
                "ANSIBLE_REMOTE_TMP": str(home / "remote-tmp"),
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_RETRY_FILES_ENABLED": "0",
            },
            timeout=240,
        )

    def playbook(
        self, *args: str, extra: dict[str, Any] | None = None, fails: bool = False
    ) -> tuple[str, int]:
        """Run site.yml; return its output and the number of changed tasks."""
        argv = ["-i", str(self.root / "inventory"), "--vault-password-file"]
        argv += [str(self.root / "vault-pass"), "site.yml", *args]
        if extra:
            argv += ["-e", json.dumps(extra)]
        result = self.ansible("ansible-playbook", *argv)
        self.outputs.append(result.stdout)
        if fails:
            assert result.returncode != 0, result.stdout[-6000:]
            return result.stdout, -1
        assert result.returncode == 0, result.stdout[-6000:]
        recaps = _RECAP.findall(result.stdout)
        assert len(recaps) == 1, result.stdout[-3000:]
        _ok, changed, unreachable, failed = map(int, recaps[0])
        assert unreachable == failed == 0
        return result.stdout, changed

    def resmon(self, version: str | None = None) -> Path:
        venv = self.home / ("venvs/" + version if version else "current")
        return venv / "bin" / "resmon"


def _handler_ran(output: str) -> bool:
    return "RUNNING HANDLER [edge_agent : Restart resmon-agent]" in output


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    root = tmp_path_factory.mktemp("ansible")
    wheelhouse = root / "wheelhouse"
    wheel = _build_wheel(REPO, wheelhouse)
    version = wheel.name.split("-")[1]
    upgrade_version = f"{version}.post1"
    _build_wheel(_source_copy_with_version(root / "src-upgrade", upgrade_version), wheelhouse)

    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    inventory = root / "inventory"
    (inventory / "group_vars" / "edge_agents").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "edge_agents": {
                    "hosts": {
                        "agent-under-test": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                            "ansible_become": False,
                        }
                    }
                }
            }
        )
    )
    settings = {
        "edge_agent_version": version,
        "edge_agent_prefix": str(root / "prefix"),
        "edge_agent_systemd": False,
        "edge_agent_install_python": False,
        "edge_agent_manage_user": False,
        "edge_agent_user": user,
        "edge_agent_group": group,
        "edge_agent_admin_user": user,
        "edge_agent_admin_group": group,
        "edge_agent_python": os.path.realpath(sys.executable),
        "edge_agent_wheelhouse": str(wheelhouse),
        "edge_agent_snmp_community": "{{ vault_snmp_community }}",
        "edge_agent_targets": [
            {"name": "rtr-1", "host": "127.0.0.1", "port": 16100},
            {"name": "rtr-2", "host": "127.0.0.1", "port": 16101, "timeout": 3.0},
        ],
        "edge_agent_kafka": {
            "bootstrap_servers": "127.0.0.1:9092",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "agent",
            "sasl_password": "{{ vault_kafka_password }}",
        },
        "edge_agent_http": {"port": 0},
    }
    (inventory / "group_vars" / "edge_agents" / "vars.yml").write_text(yaml.safe_dump(settings))
    (root / "vault-pass").write_text("vault-password-for-this-test-only\n")
    (root / "vault-pass").chmod(0o600)

    deployment = Deployment(root=root, version=version, upgrade_version=upgrade_version)
    deployment.write_vault(SNMP_CANARY, KAFKA_CANARY)
    _, changed = deployment.playbook("-vvv", "--diff")
    assert changed > 0
    return deployment


def test_ansible_lint_passes_on_deploy_ansible(tmp_path: Path) -> None:
    lint = tool("ansible-lint")
    assert lint, "ansible-lint is in the dev dependencies"
    result = run(
        [lint, "--nocolor", "--strict"],
        cwd=ANSIBLE_DIR,
        env={"ANSIBLE_HOME": str(tmp_path / "ansible-home"), "XDG_CACHE_HOME": str(tmp_path)},
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Profile 'production' was required, and it passed" in result.stdout


_EXAMPLE_PLAY = """\
- name: Render agent.yaml for every host of the example inventory
  hosts: edge_agents
  connection: local
  gather_facts: false
  tasks:
    - name: Create the config directory
      ansible.builtin.file:
        path: "{{ edge_agent_prefix }}/etc/resmon"
        state: directory
        mode: "0755"
    - name: Render and check agent.yaml as the role does
      ansible.builtin.include_role:
        name: edge_agent
        tasks_from: config.yml
"""


def test_example_inventory_renders_a_valid_agent_yaml_for_every_host(tmp_path: Path) -> None:
    """The example inventory and vault layout, rendered by the role's own config tasks and
    validated by check-config of the test environment (no install needed)."""
    (tmp_path / "play.yml").write_text(_EXAMPLE_PLAY)
    example = ANSIBLE_DIR / "inventory" / "example"
    settings = {
        "ansible_python_interpreter": sys.executable,
        "edge_agent_prefix": f"{tmp_path}/{{{{ inventory_hostname }}}}",
        "_edge_agent_venv": str(Path(sys.executable).parent.parent),
        "edge_agent_systemd": False,
        "edge_agent_admin_user": pwd.getpwuid(os.getuid()).pw_name,
        "edge_agent_group": grp.getgrgid(os.getgid()).gr_name,
    }
    home = tmp_path / "ansible-home"
    result = run(
        [
            tool("ansible-playbook") or "ansible-playbook",
            *("-i", str(example), str(tmp_path / "play.yml")),
            *("-e", f"@{example / 'group_vars' / 'edge_agents' / 'vault.yml.example'}"),
            *("-e", json.dumps(settings)),
        ],
        cwd=ANSIBLE_DIR,
        env={
            "ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles"),
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_REMOTE_TMP": str(home / "remote-tmp"),
            "ANSIBLE_NOCOLOR": "1",
        },
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    hosts = yaml.safe_load((example / "hosts.yml").read_text())["edge_agents"]["hosts"]
    for host, host_vars in hosts.items():
        config_file = tmp_path / host / "etc" / "resmon" / "agent.yaml"
        check = run([str(VENV_BIN / "resmon"), "agent", "check-config", "-c", str(config_file)])
        assert check.returncode == 0, check.stdout
        config = yaml.safe_load(config_file.read_text())
        assert config["agent_id"] == host
        assert [t["name"] for t in config["targets"]] == [
            t["name"] for t in host_vars["edge_agent_targets"]
        ]
        assert all(t["community"].startswith("replace-me") for t in config["targets"])
        assert config["kafka"]["sasl_password"] == "replace-me-as-well"


@pytest.mark.timeout(300)
def test_playbook_installs_a_virtualenv_config_buffer_and_unit(deployment: Deployment) -> None:
    venv = deployment.home / "venvs" / deployment.version
    assert (venv / "bin" / "resmon").is_file()
    assert (deployment.home / "current").resolve() == venv.resolve()
    assert deployment.config_file.stat().st_mode & 0o777 == 0o640
    assert deployment.buffer_dir.is_dir()
    assert deployment.buffer_dir.stat().st_mode & 0o777 == 0o750
    unit = deployment.unit_file.read_text()
    for line in (
        "ProtectSystem=strict",
        "NoNewPrivileges=true",
        "Restart=on-failure",
        f"ReadWritePaths={deployment.buffer_dir}",
        f"ExecStart={deployment.home}/current/bin/resmon --log-format json agent run "
        f"-c {deployment.config_file}",
    ):
        assert line in unit.splitlines(), line


@pytest.mark.timeout(300)
def test_virtualenv_holds_the_agent_extras_only(deployment: Deployment) -> None:
    python = deployment.home / "current" / "bin" / "python"
    probe = (
        "import importlib.util as u; print(*(bool(u.find_spec(m)) for m in ('pysnmp', 'asyncpg')))"
    )
    result = run([str(python), "-c", probe])
    assert result.stdout.split() == ["True", "False"], result.stdout


@pytest.mark.timeout(300)
def test_rendered_config_passes_check_config_and_holds_the_vault_secrets(
    deployment: Deployment,
) -> None:
    result = run(
        [str(deployment.resmon()), "agent", "check-config", "-c", str(deployment.config_file)]
    )
    assert result.returncode == 0, result.stdout
    config = yaml.safe_load(deployment.config_file.read_text())
    assert [t["name"] for t in config["targets"]] == ["rtr-1", "rtr-2"]
    assert config["agent_id"] == "agent-under-test"
    assert config["buffer"]["directory"] == str(deployment.buffer_dir)
    secrets = {t["community"] for t in config["targets"]} | {config["kafka"]["sasl_password"]}
    assert secrets <= {SNMP_CANARY, KAFKA_CANARY, *ROTATED}


@pytest.mark.timeout(300)
def test_unit_file_passes_systemd_analyze_verify_and_security(
    deployment: Deployment, tmp_path: Path
) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "resmon-agent.service"
    shutil.copy(deployment.unit_file, unit)
    result = run([analyze, "verify", str(unit)])
    assert result.returncode == 0, result.stdout
    # Exposure score (0 = locked down, 10 = unprotected) at most 2.5 ("OK").
    security = run([analyze, "security", "--offline=true", "--threshold=25", str(unit)])
    if "Unknown option" in security.stdout or "unrecognized option" in security.stdout:
        return  # systemd < 252 cannot score a unit offline
    assert security.returncode == 0, security.stdout


@pytest.mark.timeout(300)
def test_second_run_at_vvv_changes_nothing_and_restarts_nothing(deployment: Deployment) -> None:
    output, changed = deployment.playbook("-vvv", "--diff")
    assert changed == 0, output[-4000:]
    assert not _handler_ran(output)


@pytest.mark.timeout(300)
def test_vault_canary_appears_in_no_output_even_when_the_secret_changes(
    deployment: Deployment,
) -> None:
    new_snmp, new_kafka = ROTATED
    deployment.write_vault(new_snmp, new_kafka)
    output, changed = deployment.playbook("--diff")  # default verbosity, and a real change
    assert changed == 1, output[-4000:]
    assert _handler_ran(output)
    assert new_snmp in deployment.config_file.read_text()
    # The fixture's first run (a real change, at -vvv with --diff) is in outputs too.
    assert any("ESTABLISH LOCAL CONNECTION" in text for text in deployment.outputs)  # -vvv
    for text in deployment.outputs:
        for canary in (SNMP_CANARY, KAFKA_CANARY, new_snmp, new_kafka):
            assert canary not in text


@pytest.mark.timeout(300)
def test_invalid_config_is_rejected_before_it_replaces_agent_yaml_and_leaks_no_secret(
    deployment: Deployment,
) -> None:
    before = deployment.config_file.read_bytes()
    output, _ = deployment.playbook(
        "-vvv", "--diff", extra={"edge_agent_settings": {"intervall": 5}}, fails=True
    )
    assert "Render agent.yaml" in output
    assert not _handler_ran(output)
    assert deployment.config_file.read_bytes() == before
    for canary in (SNMP_CANARY, KAFKA_CANARY, *ROTATED):
        assert canary not in output


@pytest.mark.timeout(400)
def test_upgrade_then_rollback_then_removal(deployment: Deployment) -> None:
    old, new = deployment.version, deployment.upgrade_version

    output, changed = deployment.playbook(extra={"edge_agent_version": new})
    assert changed > 0
    assert _handler_ran(output)
    assert (deployment.home / "current").resolve().name == new
    probe = "import importlib.metadata as m; print(m.version('resmon'))"
    assert (
        run([str(deployment.home / "current" / "bin" / "python"), "-c", probe]).stdout.strip()
        == new
    )

    # Rollback: the old virtualenv is still there (edge_agent_keep_versions: 2); nothing
    # is downloaded or installed, only the link moves and the agent restarts.
    output, changed = deployment.playbook(extra={"edge_agent_version": old})
    assert _handler_ran(output)
    assert re.search(
        r"TASK \[edge_agent : Install the pinned version[^\n]*\n(ok|skipping):", output
    )
    assert (deployment.home / "current").resolve().name == old
    assert {p.name for p in (deployment.home / "venvs").iterdir()} == {old, new}

    # Keeping one version prunes the other; the running agent is not restarted for it.
    output, changed = deployment.playbook(extra={"edge_agent_keep_versions": 1})
    assert changed == 1
    assert not _handler_ran(output)
    assert {p.name for p in (deployment.home / "venvs").iterdir()} == {old}

    output, changed = deployment.playbook(
        extra={"edge_agent_state": "absent", "edge_agent_purge": True}
    )
    assert changed > 0
    for path in (
        deployment.home,
        deployment.config_file,
        deployment.unit_file,
        deployment.buffer_dir,
    ):
        assert not path.exists(), path
    assert (
        deployment.playbook(extra={"edge_agent_state": "absent", "edge_agent_purge": True})[1] == 0
    )
