"""What a user sees in the MLflow UI after a sweep, checked in a real browser (``make check-ui``).

1. a 4-job spirals sweep (optimizer x activation) logged to a fresh sqlite store in a temp folder;
2. ``mlflow ui`` over it on 127.0.0.1 and a free port (stopped at the end, even on failure);
3. headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium, the way a
   user goes: experiments list -> the experiment (MLflow 3 opens its GenAI overview) -> the
   "Model training" toggle -> the runs table; then the parent's and a child's run pages.

What must be seen is read from the store with ``MlflowClient`` (run names, the parent's
description, metric keys, artifact names), so the check follows small format changes. Every
check runs even when an earlier one fails; each failure says what was expected and what the page
showed. Screenshots (and each page's text) go to ``$NNX_UI_CHECK_DIR``, default
``outputs/ui_check/``. Exit status 0 only if every check passed. Not part of ``make test``: it
needs Chromium, which pip cannot install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin, where `mlflow` lives
OUT = Path(os.environ.get("NNX_UI_CHECK_DIR") or ROOT / "outputs" / "ui_check")
CHROMIUM = os.environ.get("NNX_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NNX_CHROMEDRIVER", "/usr/bin/chromedriver")
# log_every=1: the run page draws curves, not one dot per chart (the preset logs every 5th epoch).
SWEEP = ["experiment=spirals", "optimizer=sgd,adam", "model.activation=relu,tanh",
         "trainer.epochs=5", "trainer.log_every=1", "trainer.progress=false"]
WAIT = 30  # seconds for any one thing to appear on a page
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "SE_AVOID_STATS": "true"}
STARTED = time.monotonic()
RUN_NAME_CELL = "[role=gridcell][col-id='attributes.`Run Name`']"


class Checks:
    """Each check's outcome, printed as it comes; the summary at the end."""

    def __init__(self):
        self.failed: list[str] = []
        self.passed: list[str] = []

    def __call__(self, name: str, ok: bool, failure: str = "") -> bool:
        (self.passed if ok else self.failed).append(name)
        print(f"  {'PASS' if ok else 'FAIL'} {name}" + ("" if ok else f"\n       {failure}"),
              flush=True)
        return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def excerpt(text: str, limit: int = 400) -> str:
    text = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


# --- the store --------------------------------------------------------------------------------

def make_store(tmp: Path) -> str:
    """An empty store, its schema made by this one process: two processes migrating a fresh
    sqlite file at once can break it, and the server boots while the sweep runs."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()
    return uri


def make_sweep(tmp: Path, uri: str) -> None:
    """Run the sweep into the store at ``uri``."""
    command = [sys.executable, "-m", "nnx.run", "-m", *SWEEP, f"tracking.uri={uri}",
               f"hydra.sweep.dir={tmp / 'multirun'}"]
    start = time.monotonic()
    with open(tmp / "sweep.log", "w") as log:
        done = subprocess.run(command, cwd=tmp, stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT, env={**os.environ, **QUIET},
                              timeout=300, check=False)
    text = (tmp / "sweep.log").read_text()
    if done.returncode != 0:
        sys.exit(f"check-ui: the sweep failed (exit {done.returncode}):\n{text[-3000:]}")
    print(f"sweep: python -m nnx.run -m {' '.join(SWEEP)} ({time.monotonic() - start:.0f} s)")
    # The epilogue (what the terminal shows when a sweep ends), for the log.
    print("  " + "\n  ".join(text.rstrip().splitlines()[-12:]))


def read_store(uri: str) -> dict:
    """What the UI must show, from the store: the sweep's parent, its children, a child to open."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("spirals")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("nnx.sweep") == "true"]
    if len(parents) != 1:
        sys.exit(f"check-ui: expected one sweep parent run in the store, found {len(parents)}")
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    swept = {k[len("sweep."):] for k in parent.data.params if k.startswith("sweep.")}
    best_id = parent.data.tags.get("nnx.best_run_id")
    child = next((c for c in children if c.info.run_id == best_id), children[0])
    return {
        "experiment": experiment, "parent": parent, "children": children, "swept": swept,
        "child": child, "best_id": best_id,
        "parent_artifacts": [a.path for a in client.list_artifacts(parent.info.run_id)],
        "child_artifacts": [a.path for a in client.list_artifacts(child.info.run_id)],
        # the plot each screenshot opens: the sweep's comparison, the job's decision boundary
        "parent_plots": pngs(client, parent.info.run_id, "objective_vs_params.png"),
        "child_plots": pngs(client, child.info.run_id, "decision_boundary.png", "plots"),
    }


def pngs(client, run_id: str, first: str, folder: str | None = None) -> list[str]:
    """The PNG artifacts in ``folder`` (paths from the run's root), ``first`` first."""
    found = [a.path for a in client.list_artifacts(run_id, folder) if a.path.endswith(".png")]
    return sorted(found, key=lambda p: (not p.endswith("/" + first) and p != first, p))


def varied_values(run, swept: set[str]) -> list[str]:
    """The values of the swept keys in this job's overrides (``optimizer=adam`` -> ``adam``)."""
    overrides = json.loads(run.data.tags.get("nnx.overrides", "[]"))
    return [o.partition("=")[2] for o in overrides if o.partition("=")[0].lstrip("+~") in swept]


def value_shown(value: str, name: str) -> bool:
    """A string value appears as it is; a number as it is or to 3 significant digits."""
    if value in name:
        return True
    try:
        return f"{float(value):.3g}" in name
    except ValueError:
        return False


def markdown_table(text: str) -> tuple[list[str], int]:
    """The first Markdown table in ``text``: its header cells (markup stripped) and row count."""
    lines = [line.strip() for line in text.splitlines()]
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and re.fullmatch(r"\|?[\s:|-]+\|?", lines[i + 1]) \
                and "-" in lines[i + 1]:
            rows = 0
            for line in lines[i + 2:]:
                if not line.startswith("|"):
                    break
                rows += 1
            return [plain(c) for c in lines[i].strip("|").split("|")], rows
    return [], 0


def plain(cell: str) -> str:
    """A Markdown cell's text, links reduced to their text (``same`` compares the rest)."""
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", cell.strip()).strip()


def same(markdown: list[str], shown: list[str]) -> bool:
    """Cells equal once emphasis and code marks are ignored (``**best**`` renders as best)."""
    def bare(cells):
        return [re.sub(r"[*_`\s]", "", c) for c in cells]
    return bare(markdown) == bare(shown)


# --- the server -------------------------------------------------------------------------------

def start_ui(uri: str, port: int, log: Path) -> subprocess.Popen:
    """``mlflow ui`` as ``make ui`` starts it, in its own process group (stopped as one)."""
    command = [str(BIN / "mlflow"), "ui", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", uri]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **QUIET})


def wait_ui(server: subprocess.Popen, port: int, log: Path) -> None:
    """Until the server answers /health (10-30 s on 2 cores, more while the sweep runs)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"check-ui: mlflow ui exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"check-ui: mlflow ui did not answer /health in 120 s:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn and MLflow's job runner with it)."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    except ProcessLookupError:
        pass
    try:  # the group may outlive its leader for a moment
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def descendants(pids: set[int]) -> set[int]:
    """``pids`` and every live process below them, read from /proc."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent_of[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, grew = set(pids), True
    while grew:
        more = {p for p, pp in parent_of.items() if pp in found} - found
        found |= more
        grew = bool(more)
    return found


def listening(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, address:port) of every TCP socket these processes listen on (/proc/net/tcp*)."""
    sockets = {}
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # /proc writes each 32-bit word little-endian
            host = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            text = socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, host)
            sockets[fields[9]] = f"{text}:{int(port, 16)}"
    found = []
    for pid in sorted(pids):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            inode = link[len("socket:["):-1] if link.startswith("socket:[") else None
            if inode in sockets:
                found.append((pid, sockets[inode]))
    return found


def loopback(address: str) -> bool:
    host = address.rpartition(":")[0]
    return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")


# --- the browser ------------------------------------------------------------------------------

def open_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            sys.exit(f"check-ui: {path} not found: `apt-get install chromium chromium-driver` "
                     "(`make check-ui` does it when run as root)")
    options = Options()
    options.binary_location = CHROMIUM
    # --no-sandbox: Chromium refuses to start as root (CI) with its sandbox on.
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1600,1000", "--no-first-run", "--disable-background-networking"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class Page:
    """The browser, with the waits and the evidence (screenshot + text) each step needs."""

    def __init__(self, driver, base: str):
        self.driver, self.base, self.shots = driver, base, []

    def go(self, fragment: str) -> None:
        self.driver.get(self.base + fragment)

    def wait(self, find, timeout: float = WAIT):
        """``find(driver)`` once it returns something truthy, else None after ``timeout``."""
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        def attempt(driver):
            try:
                return find(driver)
            except WebDriverException:  # an element replaced while React re-renders
                return None
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.25).until(attempt)
        except TimeoutException:
            return None

    def css(self, selector: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def xpath(self, path: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.XPATH, path)

    def text(self) -> str:
        return self.css("body")[0].text if self.css("body") else ""

    def with_text(self, text: str) -> list:
        """Elements whose own text is exactly ``text`` (quotes in it are not supported)."""
        return self.xpath(f"//*[normalize-space(text())={json.dumps(text)}]")

    def click(self, element) -> None:
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        self.driver.execute_script("arguments[0].click();", element)

    def tidy(self) -> None:
        """Close MLflow's assistant panel and its one-time popovers: they cover the page."""
        from selenium.common.exceptions import WebDriverException

        for button in self.css("button[aria-label=Close]") + self.xpath(
                "//button[normalize-space(.)='Got it']"):
            try:
                shown = button.is_displayed()
            except WebDriverException:  # gone already: nothing to close
                continue
            if shown:
                self.click(button)

    def shoot(self, name: str) -> Path:
        time.sleep(0.5)  # let charts finish their entry animation
        path = OUT / f"{len(self.shots) + 1:02d}_{name}.png"
        print(f"    screenshot {path.name} ({time.monotonic() - STARTED:.0f} s)", flush=True)
        self.driver.save_screenshot(str(path))
        path.with_suffix(".txt").write_text(self.text())
        self.shots.append(path)
        return path


def check_runs_table(page: Page, store: dict, check: Checks) -> None:
    """(a) The runs table, reached as a user reaches it; the children named as stored, uncut."""
    experiment, parent = store["experiment"], store["parent"]
    page.go("/#/experiments")
    link = page.wait(lambda d: page.xpath(f"//a[normalize-space(.)={json.dumps(experiment.name)}]"))
    if link:
        page.click(link[0])
        page.wait(lambda d: "/overview" in d.current_url or "/runs" in d.current_url, 10)
        page.wait(lambda d: page.xpath("//button[normalize-space(.)='Got it']"), 5)
        page.tidy()
        page.shoot("experiment_opens")
        toggle = page.with_text("Model training")
        if toggle:
            page.click(toggle[0])
    reached = page.wait(lambda d: page.css(f"[row-id='{parent.info.run_id}'] {RUN_NAME_CELL}"))
    if not check("runs table reached: experiments -> experiment -> 'Model training'",
                 bool(reached), f"expected the runs table with the parent run "
                 f"{parent.info.run_name!r}; {page.driver.current_url} showed {excerpt(page.text())}"):
        page.shoot("runs_not_reached")
        page.go(f"/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning")
        reached = page.wait(lambda d: page.css(f"[row-id='{parent.info.run_id}'] {RUN_NAME_CELL}"))
        if not reached:
            return
    page.tidy()
    expand = page.css(f"[row-id='{parent.info.run_id}'] {RUN_NAME_CELL} button")
    if expand:
        page.click(expand[0])
    ids = [c.info.run_id for c in store["children"]]
    # Read in one script, so that React redrawing the table cannot leave a stale element.
    measure = """return arguments[0].map(id => {
        const span = document.querySelector(`${arguments[1]} a[href$='/runs/${id}'] span`);
        return span && [span.textContent.trim(), span.scrollWidth, span.clientWidth];
    });"""
    shown = page.wait(lambda d: all(d.execute_script(measure, ids, RUN_NAME_CELL))
                      and dict(zip(ids, d.execute_script(measure, ids, RUN_NAME_CELL))))
    page.shoot("runs_table")
    if not check(f"runs table lists the sweep's {len(ids)} children under the parent",
                 bool(shown), f"expected rows for {sorted(c.info.run_name for c in store['children'])}"
                 f" after expanding {parent.info.run_name!r}; the table showed "
                 f"{excerpt(' | '.join(c.text for c in page.css(RUN_NAME_CELL)))}"):
        return
    wrong, cut, off_contract = [], [], []
    for child in store["children"]:
        text, need, have = shown[child.info.run_id]
        name = child.info.run_name
        if text != name:
            wrong.append(f"{name!r} shown as {text!r}")
        if need > have + 1:  # CSS ellipsis: the DOM keeps the whole text, the eye does not
            cut.append(f"{name!r} needs {need} px, shows {have} px "
                       f"(about {name[:max(1, len(name) * have // need - 1)]!r}...)")
        values = varied_values(child, store["swept"])
        if not re.match(r"#\d+ ", name) or not all(value_shown(v, name) for v in values):
            off_contract.append(f"{name!r} (varied values {values})")
    check("children named as stored", not wrong, "; ".join(wrong))
    check("children named '#<n> <varied values>'", not off_contract,
          "expected '#<job> ' then each varied value; got " + "; ".join(off_contract))
    check("children's names not cut in the table", not cut,
          "expected the whole name visible; cut: " + "; ".join(cut))


def check_parent(page: Page, store: dict, check: Checks) -> None:
    """(b) The parent's description, the ranked Markdown table, rendered on its page."""
    parent, exp_id = store["parent"], store["experiment"].experiment_id
    note = parent.data.tags.get("mlflow.note.content", "")
    header, rows = markdown_table(note)
    page.go(f"/#/experiments/{exp_id}/runs/{parent.info.run_id}")
    page.wait(lambda d: parent.info.run_name in page.text())
    page.tidy()
    more = page.xpath("//button[normalize-space(.)='Show more']")
    if more:
        page.click(more[0])  # the description starts folded after a few lines
    # No table in the store: a short look, for the failure message, not a long wait.
    table = page.wait(lambda d: page.css("[data-testid=note-editor-preview-content] table"),
                      WAIT if header else 2)
    page.shoot("parent_description")
    if not check("parent's description in the store holds a Markdown table", bool(header),
                 "expected tag mlflow.note.content with a table of ranked jobs; the store has "
                 + (excerpt(note, 200) if note else "no description")):
        return
    shown_header = [th.text.strip() for th in table[0].find_elements("css selector", "th")] \
        if table else []
    shown_rows = len(table[0].find_elements("css selector", "tbody tr")) if table else 0
    check("parent's page renders the description's table",
          same(header, shown_header) and shown_rows == rows,
          f"expected a table with columns {header} and {rows} rows; the page showed "
          + (f"columns {shown_header} and {shown_rows} rows" if table
             else f"no table: {excerpt(page.text())}"))
    best = store["best_id"]
    if best and best in note:
        links = page.css(f"[data-testid=note-editor-preview-content] a[href*='{best}']")
        check("parent's description links to the best run", bool(links),
              f"expected a link to run {best} in the rendered description; the page showed "
              f"{excerpt(page.text())}")


def check_artifacts(page: Page, store: dict, which: str, check: Checks) -> None:
    """A run's artifacts listed on its page as the store has them; a plot opened for the
    screenshot (the parent's comparison plot, the child's decision boundary)."""
    run, exp_id = store[which], store["experiment"].experiment_id
    names, plots = store[f"{which}_artifacts"], store[f"{which}_plots"]
    page.go(f"/#/experiments/{exp_id}/runs/{run.info.run_id}/artifacts")
    if not check(f"{which} has artifacts in the store", bool(names),
                 "expected objective_vs_params.png and the other sweep plots (the sweep "
                 "epilogue writes them); the store has none" if which == "parent"
                 else "expected plots/, config.yaml, ...; the store has none"):
        page.wait(lambda d: page.with_text("Artifacts"), 10)
        page.shoot(f"{which}_artifacts")
        return
    listed = page.wait(lambda d: all(page.with_text(n) for n in names))
    if listed and plots:
        folder, _, plot = plots[0].rpartition("/")
        if folder:
            page.click(page.with_text(folder)[0])
        shown = page.wait(lambda d: page.with_text(plot), 10)
        if shown:
            page.click(shown[0])
            page.wait(lambda d: page.css(f"img[src*='{plot}']"), 10)
    page.shoot(f"{which}_artifacts")
    check(f"{which}'s artifacts listed on its page", bool(listed),
          f"expected {names}; the page showed {excerpt(page.text())}")


def check_metrics(page: Page, store: dict, check: Checks) -> None:
    """(c) A child's metric sections: MLflow groups charts by the prefix before '/'."""
    child, exp_id = store["child"], store["experiment"].experiment_id
    keys = sorted(child.data.metrics)
    # system/ metrics have a tab of their own; the rest are sections of "Model metrics".
    sections = sorted({k.split("/")[0] for k in keys if "/" in k} - {"system"})
    page.go(f"/#/experiments/{exp_id}/runs/{child.info.run_id}/model-metrics")
    page.wait(lambda d: page.xpath("//*[normalize-space(.)='Add chart']"))
    page.tidy()
    check(f"child {child.info.run_name!r} logs train/ and val/ metrics (the UI's sections)",
          {"train", "val"} <= set(sections),
          f"expected metric keys such as train/loss, val/loss; the store has {keys}")
    expected = sections or ["train", "val"]
    missing = [s for s in expected if not page.with_text(s)]
    first = page.with_text("train")
    if first:  # sections come in alphabetical order: diagnostics would fill the screenshot
        page.driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", first[0])
        page.wait(lambda d: "(train/" in page.text(), 10)  # charts draw once scrolled to
    page.shoot("child_metrics")
    check("child's metrics page shows a section per prefix", not missing,
          f"expected section headers {expected}; missing {missing}; the page showed "
          f"{excerpt(page.text())}")


def main() -> int:
    start = STARTED
    OUT.mkdir(parents=True, exist_ok=True)
    for old in [*OUT.glob("*.png"), *OUT.glob("*.txt")]:
        old.unlink()  # the folder holds this run's evidence only
    # SIGTERM (a CI time-out) unwinds like Ctrl-C, so that `finally` stops the server: it runs
    # in a session of its own, which nothing else would end.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="nnx-ui-check-"))
    check = Checks()
    server = driver = None
    try:
        uri = make_store(tmp)
        port = free_port()
        server = start_ui(uri, port, tmp / "ui.log")
        make_sweep(tmp, uri)
        store = read_store(uri)
        wait_ui(server, port, tmp / "ui.log")
        print(f"mlflow ui --host 127.0.0.1 --port {port} --backend-store-uri {uri}: up "
              f"({time.monotonic() - start:.0f} s since the start)")
        driver = open_browser()
        page = Page(driver, f"http://127.0.0.1:{port}")
        print(f"browser: Chromium up ({time.monotonic() - start:.0f} s since the start)")
        check_runs_table(page, store, check)
        bound = listening(descendants({server.pid, driver.service.process.pid}))
        check("the server and the browser listen on 127.0.0.1 only",
              bool(bound) and all(loopback(a) for _, a in bound)
              and any(a.endswith(f":{port}") for _, a in bound),
              f"expected loopback addresses only, with port {port}; listening: {bound}")
        check_parent(page, store, check)
        check_artifacts(page, store, "parent", check)
        check_metrics(page, store, check)
        check_artifacts(page, store, "child", check)
    except Exception:  # noqa: BLE001 - a crash is a failed check, reported like the others
        check("the check ran to its end", False, traceback.format_exc().strip())
    finally:
        if driver is not None:
            driver.quit()
        if server is not None:
            stop(server)
        if os.environ.get("NNX_UI_CHECK_KEEP"):
            print(f"store and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    shots = sorted(OUT.glob("*.png"))
    print(f"screenshots: {len(shots)} in {OUT}/ ({', '.join(p.name for p in shots)})")
    print(f"check-ui: {len(check.passed)} of {len(check.passed) + len(check.failed)} checks "
          f"passed in {time.monotonic() - start:.0f} s"
          + (f"; failed: {', '.join(check.failed)}" if check.failed else ""))
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
