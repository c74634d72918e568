"""The HTML report as an analyst sees it in a browser: Dutch labels, nothing cut off, no paths.

A store is filled with the commands a user runs (`simulate`, `replay`), the page is written by
`ketenmonitor report --format html`, and headless Chromium lays it out: a script added to a copy
of the page measures every chart label (getBBox) against its chart's width.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from ketenmonitor.domain.chain import load_chain
from tests.integration.chromium import chromium_dump_dom
from tests.integration.cli_helpers import REPO, run_cli

MEASURE = """<script>
const overflow = [];
for (const svg of document.querySelectorAll('svg')) {
  const width = svg.viewBox.baseVal.width;
  for (const text of svg.querySelectorAll('text')) {
    const box = text.getBBox();
    if (box.x < -0.5 || box.x + box.width > width + 0.5) overflow.push(text.textContent);
  }
}
const pre = document.createElement('pre');
pre.id = 'overflow';
pre.textContent = JSON.stringify(overflow);
document.body.appendChild(pre);
</script></body>"""


def test_the_html_report_is_dutch_uncut_and_names_no_server_path(tmp_path: Path) -> None:
    end = datetime(2025, 12, 31, tzinfo=UTC).timestamp()
    events = tmp_path / "events.jsonl"
    result = run_cli(["simulate", "--cases", "400", "--days", "365", "--end", str(end),
                      "--seed", "3", "--output", str(events)])
    assert result.returncode == 0, result.stderr
    store = f"sqlite:///{tmp_path / 'store.db'}"
    result = run_cli(["replay", "--from-file", str(events), "--no-progress", "--store-url", store],
                     {"KETENMONITOR_PSEUDONYM_KEY": "html-report-test-key-0123456789"})
    assert result.returncode == 0, result.stderr
    page = tmp_path / "rapport.html"
    result = run_cli(["report", "--period", "2025", "--format", "html", "--output", str(page),
                      "--store-url", store])
    assert result.returncode == 0, result.stderr
    text = page.read_text(encoding="utf-8")

    # No server path: neither the repository nor the store's folder, nor any absolute path.
    assert str(REPO) not in text and str(tmp_path) not in text
    assert "Ketendefinitie: chain.yaml." in text

    chain = load_chain()
    spec = chain.spec
    visible = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", text)))
    for label in [s.label for s in spec.stages] + [n.label for n in spec.norms]:
        assert label in visible, label
    ids = [s.id for s in spec.stages] + [s.id for s in spec.segments] + list(spec.case_types)
    ids += [n.id for n in spec.norms]
    english = [i for i in ids if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", visible)]
    assert not english, english

    measured = tmp_path / "measured.html"
    measured.write_text(text.replace("</body>", MEASURE), encoding="utf-8")
    dom = chromium_dump_dom(measured)
    found = re.search(r'<pre id="overflow">(.*?)</pre>', dom, flags=re.S)
    assert found, dom[-2000:]
    assert json.loads(html.unescape(found.group(1))) == []
    # Labels are drawn whole (they used to be shortened with an ellipsis).
    assert "…" not in visible
