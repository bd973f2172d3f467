"""Deferred and delegated mode on a Twisted reactor (each scenario in its own process,
see twisted_scenarios.py)."""

import pytest

from conftest import HERE, run_python

pytest.importorskip("twisted")

SCRIPT = HERE / "twisted_scenarios.py"


@pytest.mark.parametrize(
    "scenario", ["deferred_all", "errors", "input_helper", "delegated", "file_transfer"]
)
def test_twisted_scenario(scenario, relay_url):
    r = run_python(SCRIPT, scenario, relay_url)
    assert r.returncode == 0 and "%s OK" % scenario in r.stdout, r.stdout + r.stderr


def test_twisted_input_with_completion_from_stdin(relay_url):
    r = run_python(
        SCRIPT, "input_with_completion_stdin", relay_url, input="5-purple-sausages\n"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "input_with_completion_stdin OK" in r.stdout
