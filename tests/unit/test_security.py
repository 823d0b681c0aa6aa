"""Strict mode's rules and programs resolved once, at load (hadaemon/security.py, config.py,
home.py), on files in a temporary folder."""

import pytest

from conftest import Home
from hadaemon import actions, config as configmod, security
from hadaemon.commit import Transition
from hadaemon.home import Home as HomeDirs
from hadaemon.inifile import ConfigError


def test_an_unsafe_folder_is_reported_once_for_everything_under_it(tmp_path):
    bad = tmp_path / "bad"
    (bad / "sub").mkdir(parents=True)
    bad.chmod(0o775)
    (tmp_path / "sticky").mkdir(mode=0o777)
    (tmp_path / "sticky").chmod(0o1777)
    first = security.problems([("", bad), ("x.conf:3", bad / "sub"), ("", tmp_path / "sticky")])
    assert first == [f"strict mode: {bad} is writable by its group (chmod go-w {bad}, "
                     f"or set strict = no in [daemon])"]
    # A path named with a `where` first: the line says where, once.
    second = security.problems([("x.conf:3", bad / "sub"), ("", bad)])
    assert second == [f"x.conf:3: {first[0]}"]


def _load(tmp_path, checks, actions_text):
    root = Home(tmp_path / "home").root  # the test home: etc/, checks/record..., actions/record
    (root / "etc/checks.conf").write_text(checks)
    (root / "etc/actions.conf").write_text(actions_text)
    return HomeDirs(root.resolve()), configmod.load(HomeDirs(root.resolve()))


def test_each_planned_step_carries_the_program_resolved_at_load(tmp_path):
    home, config = _load(tmp_path, "[local]\nstatus_from_files db1\n",
                         "[*_to_up]\nrecord %HOST%\n-echo %TO%\n")
    steps = actions.plan(config.sections, Transition("db1", "down", "up", {"db1": "up"}),
                         5.0, "stop")
    assert [(s["program"], s["argv"]) for s in steps] == [
        (str(home.actions_dir / "record"), ["record", "db1"]), ("/usr/bin/echo", ["echo", "up"])]
    assert configmod.programs(config) == {"record": str(home.actions_dir / "record"),
                                          "echo": "/usr/bin/echo"}


def test_the_cluster_fence_resolves_once_and_strict_mode_vets_it(tmp_path):
    cluster = ("[cluster]\netcd = http://127.0.0.1:2379\nnode = n1\nfence = stonith -x\n"
               "[local]\nstatus_from_files db1\n")
    fence = tmp_path / "home/actions/stonith"
    fence.parent.mkdir(parents=True)
    fence.write_text("#!/bin/sh\n")
    fence.chmod(0o755)
    home, config = _load(tmp_path, cluster, "")
    assert configmod.programs(config) == {"stonith": str(home.actions_dir / "stonith")}
    fence.chmod(0o775)
    with pytest.raises(ConfigError) as e:
        configmod.load(home)
    assert e.value.problems == [f"{home.checks_conf}: [cluster] fence: strict mode: "
                                f"{home.actions_dir / 'stonith'} is writable by its group "
                                f"(chmod go-w {home.actions_dir / 'stonith'}, or set strict = "
                                f"no in [daemon])"]


def test_the_resolved_fence_is_not_a_setting(tmp_path):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, "[cluster]\netcd = http://127.0.0.1:2379\nfence_program = /bin/sh\n"
                        "[local]\nstatus_from_files db1\n", "")
    assert "unknown setting 'fence_program' in [cluster]" in e.value.problems[0]


def test_a_planned_program_is_run_only_if_still_there(tmp_path):
    home = HomeDirs(tmp_path)
    script = tmp_path / "prog"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert home.resolved(str(script), "prog") == str(script)
    script.chmod(0o644)
    with pytest.raises(LookupError, match=f"^{script} is not executable \\(resolved from "
                                          f"'prog' when the config was loaded; not looked"):
        home.resolved(str(script), "prog")
    with pytest.raises(LookupError, match="'prog': no program was resolved for it"):
        home.resolved(None, "prog")

