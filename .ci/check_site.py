"""Render every page of the built docs in headless Chromium and fail on what a reader would
see broken: a page or the main column wider than the window (content that neither fits nor
scrolls inside its own box), math left as raw LaTeX or rendered as an error, math rendering
loaded from outside the site, error cells, broken images, docutils error messages.

    python .ci/check_site.py docs/_build/html [--screenshots DIR] [--width 1280]

The site is served on the loopback interface; one Chromium process loads a harness page that
opens each page in a frame of the window's size, waits for MathJax and the images, and writes
what it found into its own DOM, which Chromium prints (``--dump-dom``). Screenshots of the
landing page and a tutorial go to ``--screenshots``. Needs Chromium (Debian: ``apt-get
install chromium``).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

SKIP = {"genindex.html", "search.html", "py-modindex.html"}
SCREENSHOTS = {"landing.png": "index.html",
               "tutorial.png": "tutorials/infinite_width_training.html"}

CHECK_JS = r"""
async function checkPage(frame, url) {
  const problems = [];
  const loaded = new Promise(r => { frame.onload = r; });
  frame.src = url;
  await loaded;
  const win = frame.contentWindow, doc = frame.contentDocument;
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const mathNodes = doc.querySelectorAll('.math');
  for (const s of doc.querySelectorAll('script[src]')) {
    const src = new URL(s.getAttribute('src'), doc.baseURI);
    if (/mathjax|katex/i.test(src.href) && src.origin !== location.origin)
      problems.push('math rendering loaded from outside the site: ' + src.href);
  }
  if (mathNodes.length) {
    for (let i = 0; i < 200 && !(win.MathJax && win.MathJax.startup &&
                                 win.MathJax.startup.promise); i++) await sleep(50);
    if (win.MathJax && win.MathJax.startup && win.MathJax.startup.promise)
      await win.MathJax.startup.promise;
    let raw = 0;
    for (const m of mathNodes) if (!m.querySelector('mjx-container')) raw++;
    if (raw) problems.push(raw + ' of ' + mathNodes.length + ' math elements not rendered');
    const errs = doc.querySelectorAll('mjx-merror');
    if (errs.length) problems.push(errs.length + ' math errors, first: ' +
                                   (errs[0].getAttribute('data-mjx-error') || errs[0].textContent));
  }
  for (let i = 0; i < 200 && [...doc.images].some(im => !im.complete); i++) await sleep(50);
  for (const im of doc.images)
    if (!im.complete || im.naturalWidth === 0)
      problems.push('broken image ' + im.getAttribute('src'));
  for (const e of doc.querySelectorAll('.output.traceback, .output.error, .system-message'))
    problems.push('error output: ' + e.textContent.trim().slice(0, 120));
  const page = doc.documentElement;
  if (page.scrollWidth > win.innerWidth + 1)
    problems.push('page wider than the window: ' + page.scrollWidth + ' > ' + win.innerWidth);
  const main = doc.querySelector('.bd-article') || doc.querySelector('main') || doc.body;
  const right = main.getBoundingClientRect().right + 1;
  const scrolls = el => {
    for (let a = el.parentElement; a && a !== main; a = a.parentElement) {
      const o = win.getComputedStyle(a).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden' || o === 'clip') return true;
    }
    return false;
  };
  let over = 0, first = '';
  for (const el of main.querySelectorAll('*')) {
    if (el.closest('mjx-assistive-mml')) continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > right && !scrolls(el)) {
      if (!over) first = el.tagName.toLowerCase() + '.' + el.className + ' "' +
                         el.textContent.trim().slice(0, 60) + '" ends at ' +
                         Math.round(r.right) + ' > ' + Math.round(right);
      over++;
    }
  }
  if (over) problems.push(over + ' elements overflow the main column, first: ' + first);
  return problems;
}
async function run(pages) {
  const frame = document.getElementById('f');
  const out = {};
  for (const p of pages) {
    try { out[p] = await checkPage(frame, p); }
    catch (e) { out[p] = ['check failed: ' + e]; }
  }
  document.getElementById('result').textContent = JSON.stringify(out);
}
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("check_site: no Chromium found; install it (Debian: apt-get install chromium).")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def browser(*args, timeout=900) -> str:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return done.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", type=Path, help="the built site (sphinx-build -b html's output)")
    ap.add_argument("--screenshots", type=Path, help="folder for the two screenshots")
    ap.add_argument("--width", type=int, default=1280, help="window width in CSS pixels")
    args = ap.parse_args()
    root = args.html.resolve()
    pages = sorted(str(p.relative_to(root)) for p in root.rglob("*.html")
                   if not {"_static", "_sources", "_modules"} & set(p.relative_to(root).parts)
                   and p.name not in SKIP)
    if not pages:
        sys.exit(f"check_site: no pages under {root}")
    harness = root / "_check_site.html"
    harness.write_text(
        "<!doctype html><html><body style='margin:0'>"
        f"<iframe id='f' style='width:{args.width}px;height:900px;border:0'></iframe>"
        f"<pre id='result'></pre><script>{CHECK_JS}\nrun({json.dumps(pages)});</script>"
        "</body></html>")
    server = serve(root)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        dom = browser(f"--window-size={args.width + 40},1000", "--virtual-time-budget=3600000",
                      "--dump-dom", base + harness.name)
        if args.screenshots:
            args.screenshots.mkdir(parents=True, exist_ok=True)
            for name, page in SCREENSHOTS.items():
                browser(f"--window-size={args.width},1000", "--virtual-time-budget=20000",
                        f"--screenshot={args.screenshots / name}", base + page, timeout=300)
    finally:
        server.shutdown()
        harness.unlink()
    start = dom.find("<pre id=\"result\">")
    if start < 0:
        sys.exit("check_site: the harness printed no result; Chromium's output:\n" + dom[:2000])
    text = dom[start + len("<pre id=\"result\">"):dom.index("</pre>", start)]
    results = json.loads(text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    bad = {p: probs for p, probs in results.items() if probs}
    missing = sorted(set(pages) - set(results))
    for page, probs in sorted(bad.items()):
        for prob in probs:
            print(f"{page}: {prob}")
    for page in missing:
        print(f"{page}: not checked")
    print(f"check_site: {len(results)} pages rendered at {args.width} px, "
          f"{len(bad) + len(missing)} with problems"
          + (f"; screenshots in {args.screenshots}" if args.screenshots else ""))
    if args.screenshots:
        for name in SCREENSHOTS:
            if not (args.screenshots / name).is_file():
                print(f"check_site: screenshot {name} was not written")
                return 1
    return 1 if bad or missing else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
