"""What `kubexp verdict` and `kubexp compare` hand to CI: JUnit XML, Markdown for a pull-request comment, JSON.

JUnit follows the common schema CI systems read (Jenkins/Surefire junit-10.xsd, also GitLab's and
GitHub actions' test reporters): one <testsuite> per command, one <testcase> per judged item; a
failing verdict (an SLO missed, a candidate worse) is a <failure>, an undecided one <skipped>.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class Case:
    classname: str
    name: str
    status: Status
    outcome: str  # met | missed | undecided, or better | worse | equivalent | inconclusive
    message: str


def junit(suite_name: str, cases: Sequence[Case], *, properties: dict[str, str] | None = None) -> str:
    """One <testsuites> with one <testsuite> holding every case."""
    failures = sum(case.status == "failed" for case in cases)
    skipped = sum(case.status == "skipped" for case in cases)
    root = ET.Element("testsuites", name=suite_name, tests=str(len(cases)), failures=str(failures), errors="0",
                      time="0")
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(cases)), failures=str(failures),
                          errors="0", skipped=str(skipped), time="0",
                          timestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    if properties:
        holder = ET.SubElement(suite, "properties")
        for key, value in properties.items():
            ET.SubElement(holder, "property", name=key, value=value)
    for case in cases:
        element = ET.SubElement(suite, "testcase", classname=case.classname, name=case.name, time="0")
        if case.status == "failed":
            ET.SubElement(element, "failure", type=case.outcome, message=case.message).text = case.message
        elif case.status == "skipped":
            ET.SubElement(element, "skipped", type=case.outcome, message=case.message)
        ET.SubElement(element, "system-out").text = f"{case.outcome}: {case.message}"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(title: str, lines: Sequence[str], header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A heading, a few summary lines and one table, for a pull-request comment."""
    table = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join([f"### {title}", "", *lines, "", *table]) + "\n"


def write_outputs(junit_path: Path | None, json_path: Path | None, markdown_path: Path | None, *, junit_text: str,
                  document: dict[str, Any], markdown_text: str) -> None:
    for path, text in ((junit_path, junit_text), (json_path, json.dumps(document, indent=2, default=str) + "\n"),
                       (markdown_path, markdown_text)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
