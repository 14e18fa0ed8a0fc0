"""waa_runner.api with the real ansible-runner and ansible-playbook, on small stand-in playbooks
against local-connection hosts (no Docker): the event shapes of ansible-runner 2.4, secrets kept
out of every artifact, deadlines, cancellation (also by SIGINT through waa-run), hosts that match
nothing, relative inventory paths, artifact rotation and the report file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.support.emulator import poll_until
from waa_runner import api, processes
from waa_runner import exit_codes as codes

REPO = Path(__file__).resolve().parents[2]

# A stand-in for the probe module: returns the health report it is given, like waa_health_probe.
PROBE_MODULE = '''
from ansible.module_utils.basic import AnsibleModule
def main():
    module = AnsibleModule(argument_spec=dict(report=dict(type="dict", required=True)))
    module.exit_json(changed=False, **module.params["report"])
main()
'''
# A stand-in for waa_image_progress: every call pulls another 100 MB of 300.
PULL_MODULE = '''
import os
from ansible.module_utils.basic import AnsibleModule
def main():
    module = AnsibleModule(argument_spec=dict(counter=dict(type="path", required=True)))
    path = module.params["counter"]
    count = int(open(path).read()) + 1 if os.path.exists(path) else 1
    open(path, "w").write(str(count))
    mb = 1024 * 1024
    module.exit_json(changed=False, done=count >= 3, pull_progress={
        "image": "i", "bytes_done": count * 100 * mb, "bytes_total": 300 * mb, "layers_done": count,
        "layers_total": 3, "status": "Downloading", "elapsed_s": count * 1.0})
main()
'''


def healthy(ready: bool = True) -> dict:
    """A probe report with its verdict, as waa_health_probe returns it."""
    report = _report(ready)
    report["waa_verdict"] = codes.verdict_of_report(report)
    return report


def _report(ready: bool) -> dict:
    layers = [{"layer": name, "healthy": True, "message": "ok", "duration_s": 0.01, "attempts": 1,
               "failure_class": None, "hint": "", "details": {}}
              for name in ("docker_daemon", "container", "vm_boot", "waa_server", "accessibility")]
    if not ready:
        layers[3].update(healthy=False, message="/probe refused", failure_class="recoverable")
        layers = layers[:4]
    return {"ready": ready, "exit_code": 0 if ready else 6, "failed_layer": None if ready else "waa_server",
            "failure_class": None if ready else "recoverable", "hint": "" if ready else "restart it once",
            "message": "ready" if ready else "waa_server: /probe refused", "layers": layers, "breaker": {},
            "duration_s": 0.05}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A playbook directory with stand-in roles and modules, an inventory of local hosts, a state dir."""
    root = tmp_path / "project"
    (root / "library").mkdir(parents=True)
    (root / "library" / "fake_probe.py").write_text(PROBE_MODULE)
    (root / "library" / "fake_pull.py").write_text(PULL_MODULE)
    for role, tasks in {
        "winarena_image": [{"name": "Pull progress", "fake_pull": {"counter": str(tmp_path / "pull-{{ inventory_hostname }}")},
                            "register": "pull", "until": "pull.done", "retries": 5, "delay": 0}],
        "waa_health": [{"name": "Probe the health layers", "fake_probe": {"report": "{{ waa_report[inventory_hostname] }}"},
                        "register": "waa_health_report"},
                       {"name": "Fail a host that is not ready", "openadapt.waa.waa_fail": {
                           "verdict": "{{ waa_health_report.waa_verdict }}"},
                        "when": "not waa_health_report.ready"}],
    }.items():
        (root / "roles" / role / "tasks").mkdir(parents=True)
        (root / "roles" / role / "tasks" / "main.yml").write_text(json.dumps(tasks))
    python = sys.executable
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"waa": {"hosts": {
        name: {"ansible_connection": "local", "ansible_python_interpreter": python} for name in ("h1", "h2")}}}))
    playbooks = {}

    def playbook(name: str, text: str) -> None:
        path = root / f"{name}.yml"
        path.write_text(textwrap.dedent(text))
        playbooks[name] = path

    monkeypatch.setattr(api, "playbook_path", lambda name: playbooks[name])
    return {"root": root, "inventory": inventory, "state": tmp_path / "state", "playbook": playbook}


UP = """
- hosts: "{{ waa_target | default('waa') }}"
  gather_facts: false
  strategy: free
  tasks:
    - {name: Image, ansible.builtin.include_role: {name: winarena_image}}
    - {name: Readiness, ansible.builtin.include_role: {name: waa_health}}
"""


def test_a_real_run_reduces_to_typed_results_with_phases_pull_progress_and_codes(project):
    project["playbook"]("up", UP)
    events = []
    result = api.up(inventory=project["inventory"], state_dir=project["state"], on_event=events.append,
                    extra_vars={"waa_report": {"h1": healthy(True), "h2": healthy(False)}})
    h1, h2 = result.hosts["h1"], result.hosts["h2"]
    assert (h1.status, h1.exit_code, len(h1.layers)) == ("ready", 0, 5)
    assert (h2.status, h2.exit_code, h2.failed_layer, h2.hint, h2.failure_class) == (
        "not_ready", 6, "waa_server", "restart it once", "recoverable")
    assert (result.exit_code, result.runner_status, result.rc) == (6, "failed", 2)
    phases = [(e.host, e.phase) for e in events if e.kind == "phase"]
    assert ("h1", "winarena_image") in phases and ("h1", "waa_health") in phases
    pulls = [e.pull for e in events if e.kind == "pull" and e.host == "h1"]
    assert [p.bytes_done // 2 ** 20 for p in pulls] == [100, 200, 300] and pulls[0].eta_s == 2.0
    assert h1.timings()["winarena_image"] > 0 and h1.duration_s > 0
    run_dir = Path(result.artifact_dir)
    assert run_dir.parent == project["state"] / "runs" and (run_dir / "artifacts" / "run" / "stdout").is_file()
    assert json.loads((run_dir / "report.json").read_text()) == json.loads(json.dumps(result.to_dict()))
    assert not (run_dir / "artifacts" / "run" / "fact_cache").exists()


def test_secrets_reach_ansible_but_no_artifact_report_or_output(project, monkeypatch):
    secret, env_secret = "pw-" + uuid.uuid4().hex, "tok-" + uuid.uuid4().hex
    monkeypatch.setenv("MY_SERVICE_TOKEN", env_secret)
    project["playbook"]("up", """
        - hosts: waa
          gather_facts: false
          tasks:
            - name: Gather the environment like a careless role would
              ansible.builtin.setup: {gather_subset: [min]}
            - name: Use the secret (a careless role that forgot no_log)
              ansible.builtin.debug: {msg: "the password is {{ waa_registry_password }} {{ creds.nested_token }}"}
            - name: Prove the secret arrived
              ansible.builtin.assert: {that: ["waa_registry_password | length == 35"]}
            - name: Fail with it in the message
              ansible.builtin.fail: {msg: "login failed for {{ waa_registry_password }}"}
    """)
    result = api.up(inventory=project["inventory"], limit="h1", state_dir=project["state"], verbosity=3,
                    extra_vars={"waa_registry_password": secret, "creds": {"nested_token": secret + "x"},
                                "waa_plain": "visible"})
    steps = {s.task: s.status for s in result.hosts["h1"].steps}
    assert steps["Prove the secret arrived"] == "ok"
    text = json.dumps(result.to_dict())
    assert secret not in text and "<redacted>" in result.hosts["h1"].message
    hits = [str(p) for p in project["state"].rglob("*") if p.is_file() and
            (secret in p.read_text(errors="replace") or env_secret in p.read_text(errors="replace"))]
    assert hits == []
    command = json.loads((Path(result.artifact_dir) / "artifacts" / "run" / "command").read_text())
    assert command["env"]["MY_SERVICE_TOKEN"] == "<redacted>"
    assert '"waa_plain": "visible"' in " ".join(command["command"]) or '"waa_plain":"visible"' in " ".join(
        command["command"])
    secrets_file = next(arg[1:] for arg in command["command"] if arg.startswith("@"))
    assert not Path(secrets_file).exists() and "creds" not in " ".join(command["command"])
    assert oct(Path(secrets_file).parent.stat().st_mode & 0o777) == "0o700"


SLOW = """
- hosts: waa
  gather_facts: false
  tasks:
    - {name: Readiness, ansible.builtin.include_role: {name: waa_health}, when: inventory_hostname == 'h1'}
    - {name: Wait forever, ansible.builtin.command: sleep 60, when: inventory_hostname == 'h2'}
"""


def gone(run_dir: Path) -> None:
    poll_until(lambda: processes.leftovers(str(run_dir)) == [], deadline_s=10, what="ansible's processes to be gone")


def test_the_overall_deadline_stops_the_run_and_unfinished_hosts_get_8(project):
    project["playbook"]("up", SLOW.replace("hosts: waa", "hosts: waa\n  strategy: free"))
    started = time.monotonic()
    result = api.up(inventory=project["inventory"], state_dir=project["state"], timeout=10,
                    extra_vars={"waa_report": {"h1": healthy(True), "h2": healthy(True)}})
    assert time.monotonic() - started < 30
    assert (result.runner_status, result.rc) == ("timeout", 254)
    gone(Path(result.artifact_dir) / "artifacts" / "run")
    assert result.hosts["h1"].status == "ready"
    assert (result.hosts["h2"].status, result.hosts["h2"].exit_code) == ("unfinished", codes.DEADLINE)
    assert result.exit_code == codes.DEADLINE


def test_cancel_stops_the_run(project):
    project["playbook"]("up", SLOW)
    started = time.monotonic()
    result = api.up(inventory=project["inventory"], limit="h2", state_dir=project["state"],
                    cancel=lambda: time.monotonic() - started > 2)
    assert time.monotonic() - started < 15
    assert result.runner_status == "canceled" and result.exit_code == codes.DEADLINE
    gone(Path(result.artifact_dir) / "artifacts" / "run")


def test_sigint_to_waa_run_cancels_cleanly_and_stops_ansible(project, tmp_path):
    project["playbook"]("up", SLOW)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from waa_runner import api, cli
        api.playbook_path = lambda name: Path({str(project['root'] / 'up.yml')!r})
        sys.exit(cli.main(["up", "-i", {str(project['inventory'])!r}, "-l", "h2", "--state-dir",
                           {str(project['state'])!r}, "--json"]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = project["state"] / "runs"
    poll_until(lambda: any("Wait forever" in path.read_text() for path in runs.glob("*/artifacts/run/job_events/*.json")),
               deadline_s=30, what="the run to reach its endless task")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    report = json.loads(out)
    assert proc.returncode == codes.DEADLINE == report["exit_code"], err
    assert report["runner_status"] == "canceled" and report["hosts"]["h2"]["status"] == "unfinished"
    assert "stopping the run" in err
    left = subprocess.run(["pgrep", "-f", str(project["root"] / "up.yml")], capture_output=True, text=True).stdout
    assert left.strip() == ""


def test_a_limit_that_matches_nothing_is_a_usage_error(project):
    project["playbook"]("up", UP)
    result = api.up(inventory=project["inventory"], limit="nosuchhost", state_dir=project["state"])
    assert result.exit_code == codes.USAGE and not result.hosts and "no host matched" in result.summary


def test_a_relative_inventory_path_is_a_path_not_ini_text(project, monkeypatch):
    project["playbook"]("up", UP)
    monkeypatch.chdir(project["inventory"].parent)
    result = api.up(inventory=project["inventory"].name, limit="h1", state_dir=project["state"],
                    extra_vars={"waa_report": {"h1": healthy(True)}})
    assert result.ok and set(result.hosts) == {"h1"}
    command = json.loads((Path(result.artifact_dir) / "artifacts" / "run" / "command").read_text())["command"]
    assert str(project["inventory"]) in command


def test_a_broken_playbook_fails_with_its_error_in_the_summary(project):
    project["playbook"]("up", "- hosts: waa\n  tasks:\n    - no_such_module_here: {}\n")
    result = api.up(inventory=project["inventory"], state_dir=project["state"])
    assert result.exit_code == codes.UNKNOWN and not result.hosts
    assert "before any host ran" in result.summary and "no_such_module_here" in result.summary


def test_run_directories_rotate(project):
    project["playbook"]("down", "- hosts: waa\n  gather_facts: false\n  tasks: [{ansible.builtin.debug: {msg: bye}}]\n")
    for _ in range(3):
        result = api.down(inventory=project["inventory"], state_dir=project["state"], keep_runs=2)
    assert result.ok
    assert len(list((project["state"] / "runs").iterdir())) == 2


def test_validation_happens_before_anything(project):
    with pytest.raises(api.UsageError, match="forks"):
        api.up(inventory=project["inventory"], forks=0, state_dir=project["state"])
    with pytest.raises(api.UsageError, match="extra variable name"):
        api.up(local=True, extra_vars={"not a name": 1}, state_dir=project["state"])
    with pytest.raises(api.UsageError, match="timeout"):
        api.probe(local=True, timeout=float("nan"), state_dir=project["state"])
    assert not project["state"].exists()


def test_secret_names_are_recognised():
    from waa_runner.redact import Redactor, split_secrets

    plain, secret = split_secrets({"waa_registry_password": "a", "API_TOKEN": "b", "client_secret": "c",
                                   "env": {"HF_TOKEN": "d"}, "waa_image": "e", "list": [{"passwd": 1}],
                                   "waa_health_timeout": 5})
    assert set(secret) == {"waa_registry_password", "API_TOKEN", "client_secret", "env", "list"}
    assert set(plain) == {"waa_image", "waa_health_timeout"}
    redactor = Redactor(["s3cr3t-value", 'quote"d-secret'])
    event = {"event_data": {"res": {"msg": "x s3cr3t-value y", "q": 'quote"d-secret',
                                    "ansible_facts": {"ansible_env": {"HOME": "/root"}, "other": 1}}}}
    redactor.event(event)
    assert event == {"event_data": {"res": {"msg": "x <redacted> y", "q": "<redacted>",
                                            "ansible_facts": {"other": 1}}}}
    assert os.environ.get("NOT_SET_ANYWHERE") is None


def test_azure_runs_without_the_sdks_are_refused_before_anything_runs(tmp_path, monkeypatch):
    from ansible_collections.azure.azcollection.plugins.module_utils import azure_rm_common

    monkeypatch.setattr(azure_rm_common, "HAS_AZURE", False)
    monkeypatch.setattr(azure_rm_common, "HAS_AZURE_EXC", "No module named 'azure.mgmt.compute'")
    inventory = tmp_path / "azure_rm.yml"
    inventory.write_text("plugin: azure.azcollection.azure_rm\n")
    for call in (lambda: api.up(inventory=inventory, state_dir=tmp_path / "state"),
                 lambda: api.provision(pool="a", ssh_source_cidr="203.0.113.7/32", state_dir=tmp_path / "state")):
        with pytest.raises(api.UsageError, match=r"No module named 'azure.mgmt.compute'.*install-azure-deps.sh"):
            call()
    assert not (tmp_path / "state").exists() or not list((tmp_path / "state").rglob("runs/*"))


def test_provision_and_teardown_inputs_are_checked_first(tmp_path):
    state_dir = tmp_path / "state"
    with pytest.raises(api.UsageError, match="pool 'A' is not a pool name"):
        api.provision(pool="A", ssh_source_cidr="203.0.113.7/32", state_dir=state_dir)
    with pytest.raises(api.UsageError, match="count 0 must be a whole number at least 1 and at most 50"):
        api.provision(pool="a", count=0, ssh_source_cidr="203.0.113.7/32", state_dir=state_dir)
    with pytest.raises(api.UsageError, match="ssh_source_cidr is required"):
        api.provision(pool="a", ssh_source_cidr="", state_dir=state_dir)
    with pytest.raises(api.UsageError, match="repeat the pool name"):
        api.teardown(pool="a", confirm="b", state_dir=state_dir)
