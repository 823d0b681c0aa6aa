"""The status page in a real browser: a real daemon makes a real transition and serves its page
at `/` of its HTTP endpoint, which Debian's headless Chromium loads while the transition's
sequence runs and again once it has ended. The test checks what
the browser's DOM shows, that nothing reaches past a phone's width, and keeps screenshots under
its tmp_path."""

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import FAST, committed, host_name, http_body, wait_for
from dom import parse
from ports import free_ports

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get "
                                "install chromium): the page is tested in a real browser")

PHONE = 390  # CSS pixels: a phone held upright

# An action that runs until the test lets it go (var/go), at most a minute.
HOLD = """\
#!/bin/sh
i=0
while [ ! -e "$HA_HOME/var/go" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
echo "released after $i polls"
"""


def page_url(url):
    """The daemon's page once it serves data from now on: its snapshot is up to a second old
    (httpserver.REFRESH), and the test checks what it has just seen happen."""
    since = time.time()

    def fresh():
        html = http_body(url)
        return html is not None and float(
            parse(html.decode()).find("body").attrs["data-as-of"]) >= since
    wait_for(fresh, 30, "the status page as of now")
    return url


def chromium(tmp_path, url, *args):
    """Headless Chromium on url with args; its stdout. A profile of its own every time, and
    nothing fetched but the page."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []  # it refuses root otherwise
    result = subprocess.run(
        [CHROMIUM, "--headless", *sandbox, "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", *args, url],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"chromium exited {result.returncode}: {result.stderr}"
    shutil.rmtree(profile, ignore_errors=True)
    return result.stdout


def look(tmp_path, url, name, sizes=("1280,900",)):
    """The DOM Chromium made of the page, and a screenshot at each window size."""
    for size in sizes:
        shot = tmp_path / f"{name}-{size.split(',')[0]}.png"
        chromium(tmp_path, url, f"--screenshot={shot}", f"--window-size={size}")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"no screenshot {shot}"
    return parse(chromium(tmp_path, url, "--dump-dom"))


# Headless Chromium's --dump-dom lays out at least 500 pixels wide whatever --window-size says
# (its screenshots do not): the page is made PHONE wide, then whatever reaches past that shows.
MEASURE = f"""<style>html{{width:{PHONE}px}}</style><script>
let right = 0;
for (const e of document.querySelectorAll("body *"))
  right = Math.max(right, e.getBoundingClientRect().right);
document.body.dataset.right = Math.ceil(right);
</script></body>"""


def laid_out_width(tmp_path, url):
    """How far right anything of the page reaches when it is laid out phone wide. The page
    has no script: a copy of it gets one, which writes it where --dump-dom shows it."""
    html = urllib.request.urlopen(url).read().decode()
    probe = tmp_path / "measured.html"
    probe.write_text(html.replace("</body>", MEASURE))
    dom = parse(chromium(tmp_path, probe.as_uri(), f"--window-size={PHONE},844", "--dump-dom"))
    return int(dom.find("body").attrs["data-right"])


def test_the_page_shows_a_transition_as_it_happens_in_a_real_browser(home, daemons, tmp_path):
    long = host_name(1)[:240]  # no space in it: the page must fit a phone all the same
    [port] = free_ports(1)
    home.write("checks.conf", FAST + f"confirm = 2\n[local]\nstatus_from_files db1 db2 {long}\n"
               f"[http]\nlisten = 127.0.0.1:{port}\n")
    url = f"http://127.0.0.1:{port}/"
    home.write("actions.conf", """
        [slave_to_master]
        record stopservice1
        -false
        hold
        record plumb %MASTER%
        """)
    home.script("actions", "hold", HOLD)
    home.set_status("db1", "slave")
    home.set_status("db2", "slave")
    home.set_status(long, "up")
    daemons(home)
    wait_for(committed(home, "db1", "slave"), 30, "db1 slave")
    wait_for(committed(home, "db2", "slave"), 30, "db2 slave")
    wait_for(committed(home, long, "up"), 30, "the long-named host up")
    home.set_status("db1", "master")
    wait_for(lambda: [e for e in home.history() if e["to"] == "master"
                      and e["state"] == "running" and e["commands"][2]["outcome"] == "running"],
             30, "the sequence at its third command")

    during = look(tmp_path, page_url(url), "during")
    card = during.find("article", data_host="db1")
    assert card.find(cls="status").text() == "master"
    assert [r.attrs["data-status"] for r in card.find("svg", cls="timeline").find_all(
        "rect", cls="span")][-2:] == ["slave", "master"]
    assert "db1 → master running" in during.find("section", id="queue").text()
    newest = during.find("section", id="transitions").find("article", cls="transition")
    assert [(li.find(cls="outcome").text(), li.find("code").text()) for li in
            newest.find_all("li")] == [("ok", "record stopservice1"), ("failed", "-false"),
                                       ("running", "hold"), ("not run", "record plumb %MASTER%")]

    (home.root / "var/go").touch()
    wait_for(lambda: [e for e in home.history() if e["to"] == "master" and e["state"] == "done"],
             60, "the sequence done")
    after = look(tmp_path, page_url(url), "after",
                 ("1280,900", f"{PHONE},844"))
    newest = after.find("section", id="transitions").find("article", cls="transition")
    head = newest.find("h3")
    assert (head.find(cls="who").text(), [s.text() for s in head.find_all(cls="status")],
            head.find(cls="state").text()) == ("db1", ["slave", "master"], "done")
    assert [li.find(cls="outcome").text() for li in newest.find_all("li")] == [
        "ok", "failed", "ok", "ok"]
    assert "exit 1" in newest.find_all("li")[1].text()
    assert "released after" in newest.find_all("li")[2].find("pre").text()
    assert "as record plumb db1" in newest.find_all("li")[3].text()  # %MASTER% expanded
    assert "no sequence queued" in after.find(cls="queue").text()
    other = after.find("article", data_host="db2")
    assert other.find(cls="status").text() == "slave"
    assert [r.attrs["data-status"] for r in other.find_all("rect", cls="span")][-1] == "slave"
    assert after.find("article", data_host=long).find(cls="name").text() == long
    assert laid_out_width(tmp_path, page_url(url)) <= PHONE
