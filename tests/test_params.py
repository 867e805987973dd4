"""params.yaml: the typed schema rejects bad input with the key path; the CLI prints one message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pluto_dvc.cli import main
from pluto_dvc.errors import ParamsError
from pluto_dvc.params import Params, load_params, params_to_yaml, parse_params

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_file_is_valid_and_complete():
    params = load_params(REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    # every key of the schema is written (and commented) in params.yaml, nothing is only a default
    assert set(raw) == set(params.model_dump())
    for section, values in params.model_dump().items():
        assert set(raw[section]) == set(values), section


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"synthetic": {"num_logz": 3}}, ["unknown key 'synthetic.num_logz'", "num_logs"]),
        ({"bogus": {}}, ["unknown key 'bogus'", "synthetic"]),
        ({"synthetic": {"num_logs": "many"}}, ["'synthetic.num_logs'", "integer"]),
        ({"synthetic": {"num_logs": 0}}, ["'synthetic.num_logs'", "greater than or equal to 1"]),
        ({"synthetic": {"minutes_per_log": -1}}, ["'synthetic.minutes_per_log'", "greater than 0"]),
        ({"synthetic": {"log_locations": ["mars"]}}, ["synthetic.log_locations", "us-ma-boston"]),
        ({"worker": {"kind": "gpu"}}, ["'worker.kind'", "'sequential', 'processes' or 'ray'"]),
        ({"synthetic": {"map_size": "huge"}}, ["'synthetic.map_size'", "'tiny' or 'default'"]),
    ],
)
def test_bad_params_name_the_key_and_the_expectation(raw, words):
    with pytest.raises(ParamsError) as exc:
        parse_params(raw)
    for word in words:
        assert word in str(exc.value)


def test_all_problems_reported_at_once():
    with pytest.raises(ParamsError) as exc:
        parse_params({"synthetic": {"num_logs": 0, "seed": -1}})
    assert "synthetic.num_logs" in str(exc.value) and "synthetic.seed" in str(exc.value)


def test_overrides_parse_yaml_values(tmp_path):
    params = load_params(
        tmp_path / "missing.yaml",
        ["synthetic.num_logs=3", "synthetic.log_locations=[sg-one-north]", "worker.kind=ray"],
    )
    assert params.synthetic.num_logs == 3
    assert params.synthetic.log_locations == ["sg-one-north"]
    assert params.worker.kind == "ray"
    with pytest.raises(ParamsError, match="key.path=value"):
        load_params(tmp_path / "missing.yaml", ["synthetic.num_logs"])


def test_malformed_yaml_is_a_params_error(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("synthetic: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_printed_params_round_trip(tmp_path, capsys):
    assert main(["params", "--params", str(REPO / "params.yaml"), "-S", "synthetic.seed=7"]) == 0
    printed = capsys.readouterr().out
    again = parse_params(yaml.safe_load(printed))
    assert again.synthetic.seed == 7
    assert params_to_yaml(again) == printed


def test_cli_bad_params_one_message_no_traceback(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("synthetic:\n  num_logs: -2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pluto_dvc.cli", "params", "--params", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "synthetic.num_logs" in proc.stderr
    assert "Traceback" not in proc.stderr


# Values where params.yaml deliberately differs from the schema's default, and why. The schema's
# null limit means "not applied" (and lets a preset set it); the repository's pipeline caps the
# synthetic selection so that `dvc repro` runs in minutes.
PIPELINE_CHOICES = {("filter", "limit_total_scenarios"): 4000}


def test_repository_params_file_states_the_schema_defaults():
    """params.yaml and the schema agree on every value (not only on the keys), apart from the
    listed pipeline choices: a default changed in one place and not the other fails here."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    defaults = Params().model_dump(mode="json")
    differ = {
        (section, key): value
        for section, values in raw.items()
        for key, value in values.items()
        if defaults[section][key] != value
    }
    assert differ == PIPELINE_CHOICES
    assert all(defaults[s][k] is None for s, k in PIPELINE_CHOICES)
