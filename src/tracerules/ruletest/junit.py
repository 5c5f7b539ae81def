"""JUnit XML for rule tests, as CI systems (GitHub, GitLab, Jenkins) display it.

One <testsuite> per test file; a file that does not load is one <testcase> with an <error>.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from tracerules.errors import render_human
from tracerules.ruletest.load import Suite
from tracerules.ruletest.run import Result, describe


def junit_xml(suites: Sequence[Suite], results: Sequence[Result]) -> str:
    """The report as an XML document string."""
    root = ET.Element("testsuites", name="tracerules test")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    seconds = 0.0
    for suite in suites:
        mine = [r for r in results if r.test.path == suite.path]
        if not mine and not suite.diagnostics:
            continue
        element = _suite(suite, mine)
        root.append(element)
        for key in totals:
            totals[key] += int(element.get(key, "0"))
        seconds += float(element.get("time", "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{seconds:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _classname(path: str) -> str:
    name = Path(path).as_posix().removesuffix(".yaml").removesuffix(".yml")
    return name.replace("/", ".").lstrip(".")


def _suite(suite: Suite, results: Sequence[Result]) -> ET.Element:
    element = ET.Element("testsuite", name=suite.path, file=suite.path)
    if suite.diagnostics:
        case = ET.SubElement(
            element, "testcase", classname=_classname(suite.path), name="(load)", time="0"
        )
        text = "\n\n".join(render_human(d, suite.sources) for d in suite.diagnostics)
        error = ET.SubElement(
            case, "error", message=f"{len(suite.diagnostics)} error(s) in the test file"
        )
        error.set("type", "load")
        error.text = text
        element.set("tests", "1")
        element.set("errors", "1")
        element.set("failures", "0")
        element.set("time", "0")
        return element
    for result in results:
        element.append(_case(result))
    element.set("tests", str(len(results)))
    element.set("failures", str(sum(1 for r in results if r.failures and not r.crash)))
    element.set("errors", str(sum(1 for r in results if r.crash)))
    element.set("time", f"{sum(r.seconds for r in results):.3f}")
    return element


def _case(result: Result) -> ET.Element:
    case = ET.Element(
        "testcase",
        classname=_classname(result.test.path),
        name=result.test.name,
        time=f"{result.seconds:.3f}",
        file=result.test.path,
        line=str(result.test.line),
    )
    if result.crash:
        error = ET.SubElement(case, "error", message="the engine raised an exception")
        error.set("type", "crash")
        error.text = result.crash
    elif result.failures:
        count = sum(len(f.mismatches) for f in result.failures)
        failure = ET.SubElement(case, "failure", message=f"{count} expectation(s) not met")
        failure.set("type", "expectation")
        failure.text = "\n".join(line for f in result.failures for line in describe(f))
    return case
