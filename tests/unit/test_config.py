"""Reading etc/checks.conf and etc/actions.conf (hadaemon/config.py, inifile.py) from files
written to a temporary home: every problem is one line naming the file and the line, and every
problem of a file is reported at once."""

import pytest

from conftest import FAILOVER
from hadaemon import config
from hadaemon.home import Home
from hadaemon.inifile import ConfigError, read_sections, split_setting


def assert_starts(found, expected):
    """Every problem found, in order, starts with the expected text (paths in it vary)."""
    assert len(found) == len(expected), found
    for line, start in zip(found, expected):
        assert line.startswith(start), (line, start)


def problems(home):
    with pytest.raises(ConfigError) as e:
        config.load(Home(home.root))
    return e.value.problems


def test_config_refuses_each_typo_with_its_file_and_line(home):
    home.write("checks.conf", "[daemon]\nstatuses = standby, Bad_One\n[local]\n"
               "status_from_files db1\n")
    home.write("actions.conf", """\
        [slave_to_master]
        record %MASTR%
        record %master%
        record %STANDBY% %HOST% %FROM% %TO% 100%% x%SLAVE%y
        [slave_to_mastre]
        record x
        [standby_to_*]
        record %UP%
        [*_to_standy]
        record x
        [slave_to_master on %MASTR%]
        record x
        [slave_to_master on %MASTER%]
        record x
        """)
    checks, acts = home.root / "etc/checks.conf", home.root / "etc/actions.conf"
    found = problems(home)
    expected = [
        f"{checks}:2: statuses: 'Bad_One' is not a status name",
        f"{acts}:2: %MASTR% can never have a value (did you mean %MASTER%?): variables are "
        "%HOST%, %FROM%, %TO% and one per declared status (%DOWN%, %MASTER%, %SLAVE%, "
        "%STANDBY%, %UNKNOWN%, %UP%, %WARNING%;",
        f"{acts}:3: %master% is not a variable: variables are upper case (did you mean "
        "%MASTER%?)",
        f"{acts}:5: section [slave_to_mastre] would never run: status 'mastre' is not declared "
        "(did you mean 'master'?); declared: down, master, slave, standby, unknown, up, warning",
        f"{acts}:9: section [*_to_standy] would never run: status 'standy' is not declared "
        "(did you mean 'standby'?)",
        f"{acts}:11: %MASTR% can never have a value (did you mean %MASTER%?)"]
    assert_starts(found, expected)


def test_a_missing_actions_conf_is_a_warning_naming_the_file(home):
    home.write("checks.conf", "[local]\nstatus_from_files db1\n")
    loaded = config.load(Home(home.root))
    assert loaded.sections == ()
    assert loaded.warnings == (f"{home.root / 'etc/actions.conf'}: does not exist: no action "
                               "will run on any transition",)
    home.write("actions.conf", FAILOVER)
    assert config.load(Home(home.root)).warnings == ()


def test_the_structure_of_a_file_is_checked_line_by_line(tmp_path):
    path = tmp_path / "x.conf"
    path.write_text("orphan = 1\n[a]\nk = v\n[a]\nlost\n[b\n[ok]\n  ; comment\nv = 1\n"
                    "[nul]\nx\0y\n")
    with pytest.raises(ConfigError) as e:
        read_sections(path)
    assert e.value.problems == [
        f"{path}:1: line outside any [section]: 'orphan = 1'",
        f"{path}:4: section [a] repeated (first at line 2)",
        f"{path}:6: malformed section header '[b'",
        f"{path}:11: NUL character"]
    path.write_text("# head\n[a]\n\n k = v \nword\n[b]\n")
    assert [(s.name, s.lineno, s.lines) for s in read_sections(path)] == [
        ("a", 2, [(4, "k = v"), (5, "word")]), ("b", 6, [])]


def test_an_unreadable_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "x.conf"
    path.write_bytes(b"[a]\nk = v\nk = \xff\n")
    with pytest.raises(ConfigError, match=f"^{path}:3: not valid UTF-8$"):
        read_sections(path)
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'none.conf'}: cannot read: No such"):
        read_sections(tmp_path / "none.conf")
    with pytest.raises(ConfigError, match=f"^{path}:7: expected 'key = value', got 'word'$"):
        split_setting(path, 7, "word")
    assert split_setting(path, 7, " Key = a = b ") == ("key", "a = b")


def test_bad_settings_are_refused_each_with_its_line(home):
    home.write("checks.conf", """\
        [daemon]
        interval = 2 minutes
        workers = many
        workers = 2
        timeout = 0
        on_failure = retry
        colour = blue
        [check:status_from_files]
        timeout = 1
        [check:nowhere]
        interval = 1
        [remote]
        status_from_files db1
        missing_script
        status_from_files db2
        """)
    home.write("actions.conf", "[up_to_down]\nrecord %HOST%\n")
    conf = home.root / "etc/checks.conf"
    found = problems(home)
    # the keys of a section first (its lines), then their values, then the scopes
    expected = [
        f"{conf}:4: workers set twice in [daemon] (first at line 3)",
        f"{conf}:7: unknown setting 'colour' in [daemon] (known: interval, timeout, ",
        f"{conf}:2: interval: expected seconds (e.g. 2, 0.5, 500ms, 1m), got '2 minutes'",
        f"{conf}:3: workers: expected a whole number, got 'many'",
        f"{conf}:5: timeout: must be at least 0.01, got '0'",
        f"{conf}:6: on_failure: expected one of stop, continue, got 'retry'",
        f"{conf}:12: unknown scope [remote] (scopes: local, ssh:HOST, node:NAME; ",
        f"{conf}:8: [check:status_from_files] is not listed in any scope",
        f"{conf}:10: [check:nowhere] is not listed in any scope"]
    assert_starts(found, expected)


def test_check_lines_and_action_sections_are_read_with_their_line(home):
    home.write("checks.conf", """\
        [daemon]
        interval = 500ms
        [local]
        status_from_files db1
        status_from_files db2
        nosuchcheck
        [check:status_from_files]
        host = db1
        """)
    home.write("actions.conf", "[up_to_down]\nrecord %HOST%\n[up-down]\nrecord x\n"
                               "[down_to_up]\n%HOST% x\nrecord 'unclosed\n")
    conf, acts = home.root / "etc/checks.conf", home.root / "etc/actions.conf"
    found = problems(home)
    expected = [
        f"{conf}:5: check 'status_from_files' listed twice (first at line 4)",
        f"{conf}:6: check 'nosuchcheck': ",
        f"{acts}:3: section [up-down] is not FROM_to_TO",
        f"{acts}:6: the program name may not be a variable: '%HOST%'",
        f"{acts}:7: cannot split command: "]
    assert_starts(found, expected)


def test_a_valid_home_loads_with_its_defaults_and_overrides(home):
    home.write("checks.conf", "[daemon]\ninterval = 1m\nconfirm = 2\n[local]\n"
                              "status_from_files db1 db2\n[check:status_from_files]\n"
                              "timeout = 500ms\nhost = db1\n")
    home.write("actions.conf", FAILOVER)
    loaded = config.load(Home(home.root))
    [c] = loaded.checks
    assert (c.id, c.interval, c.timeout, c.confirm, c.host) == (
        "status_from_files", 60.0, 0.5, 2, "db1")
    assert c.argv == (str(home.root / "checks/status_from_files"), "db1", "db2")
    assert c.where == f"{home.root / 'etc/checks.conf'}:5"
    [s] = loaded.sections
    assert (s.name, s.source, s.target) == ("slave_to_master", "slave", "master")
    assert [(x.words, x.where) for x in s.commands][2] == (
        ("record", "plumb", "%MASTER%"), f"{home.root / 'etc/actions.conf'}:4")


def test_http_section_is_read_and_each_mistake_named_with_its_line(home):
    home.write("checks.conf", "[local]\nstatus_from_files db1\n")
    assert config.load(Home(home.root)).http is None  # no [http]: no server
    home.write("checks.conf", "[local]\nstatus_from_files db1\n[http]\nlisten = [::1]:9105\n")
    assert config.load(Home(home.root)).http == config.HttpSettings("[::1]:9105")
    path = home.root / "etc/checks.conf"
    for body, expected in (
            ("", f"{path}:3: [http] needs listen = HOST:PORT"),
            ("listen = 127.0.0.1:99999\n", f"{path}:4: listen: port must be 1 to 65535"),
            ("listen = no/such/dir/x.sock\n", f"{path}:4: listen: folder "),
            ("port = 9105\n", f"{path}:4: unknown setting 'port' in [http]"),
            ("listen = a:1\nlisten = b:2\n", f"{path}:5: listen set twice in [http]")):
        home.write("checks.conf", "[local]\nstatus_from_files db1\n[http]\n" + body)
        assert_starts(problems(home), [expected])
