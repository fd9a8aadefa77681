"""report.json of validate and compare_steppers against the documented schema."""

import copy
import json
import re
from pathlib import Path

import pytest
import torch

import physres
from physres.steppers import Stepper
from physres.validation import compare_steppers, schema, validate

DOCS = Path(__file__).resolve().parents[1] / "docs" / "validation.md"


@pytest.fixture(scope="module")
def ho_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("schema") / "ho.h5"
    physres.data.generate("harmonic_oscillator", path, n_traj=3, t_end=2.0, progress=False)
    return path


@pytest.fixture(scope="module")
def comparison_doc(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    study = compare_steppers(
        "harmonic_oscillator",
        ["euler", "rk4", "backward_euler"],
        dts=[0.2, 0.1],
        t_end=2.0,
        progress=False,
    )
    study.save(out)
    return json.loads((out / "report.json").read_text()), study


def test_comparison_report_follows_the_schema(comparison_doc):
    doc, study = comparison_doc
    assert schema.check(doc) == []
    assert doc["kind"] == "comparison" and doc["schema_version"] == schema.SCHEMA_VERSION
    # the records and the views agree with what was written
    for name, entry in doc["steppers"].items():
        rec = study.results[name]
        assert entry["errors"] == pytest.approx(list(study.errors[name]))
        assert entry["status"] == ["ok", "ok"] and rec.status == ["ok", "ok"]
        assert entry["invariant_drift"]["energy"] == pytest.approx(
            list(study.drift[name]["energy"])
        )
    assert doc["steppers"]["euler"]["stability"]["largest_stable_dt"] == 0.0
    assert doc["steppers"]["backward_euler"]["stability"]["largest_stable_dt"] is None  # inf


def test_validation_report_follows_the_schema(ho_file, tmp_path):
    validate("rk4", ho_file, out=tmp_path / "v", lyapunov_exponent=0.5, progress=False)
    doc = json.loads((tmp_path / "v" / "report.json").read_text())
    assert schema.check(doc) == []
    assert doc["kind"] == "validation" and doc["failure"] is None
    assert "mean_lyapunov_times" in doc["valid_prediction_time"]


class Exploding(Stepper):
    name = "exploding"
    order = 1

    def _step(self, x, t, dt):
        return x * 1e100


def test_a_failed_validation_follows_the_schema(ho_file, tmp_path):
    validate(Exploding(None, state_shape=(2,)), ho_file, out=tmp_path / "b", progress=False)
    doc = json.loads((tmp_path / "b" / "report.json").read_text())
    assert schema.check(doc) == []
    assert doc["failure"]["reason"].startswith("non-finite")
    assert doc["relative_l2"]["final_mean"] is None


def test_a_failed_comparison_run_is_a_record_with_its_status():
    # euler on x' = -100 x: at dt = 1, |1 - 100|^n passes 1.8e308 at step 155 of 200
    class Decay(physres.systems.System):
        state_shape = (1,)
        t_end = 200.0
        dt_save = 1.0

        def rhs(self, t, x):
            return -100.0 * x

        def sample_initial(self, n, seed=0):
            return torch.ones(n, 1, dtype=torch.float64)

        def invariants(self, x):
            return {}

    study = compare_steppers(Decay(), ["euler"], dts=[1.0, 0.015], stability=False, progress=False)
    run = study.results["euler"].runs[0]
    assert run.status == "diverged" and run.error == float("inf")
    assert run.failed_time == pytest.approx(155.0)
    assert study.results["euler"].runs[1].status == "ok"
    doc = json.loads(json.dumps(study.metrics))
    assert schema.check(doc) == []
    assert doc["steppers"]["euler"]["status"] == ["diverged", "ok"]
    assert doc["steppers"]["euler"]["errors"][0] is None


def test_the_checker_names_every_departure(comparison_doc):
    doc = copy.deepcopy(comparison_doc[0])
    del doc["t_end"]
    doc["n_traj"] = "four"
    doc["extra"] = 1
    doc["steppers"]["rk4"]["errors"][1] = "small"
    doc["steppers"]["rk4"]["stability"]["linear"] = 1
    problems = schema.check(doc)
    assert "report lacks the key 't_end'" in problems
    assert "report['n_traj'] = 'four', expected int" in problems
    assert "report['extra'] is not in the schema" in problems
    assert "report['steppers']['rk4']['errors'][1] = 'small', expected number" in problems
    assert any(p.startswith("report['steppers']['rk4']['stability']") for p in problems)
    assert len(problems) == 5
    assert schema.check({"kind": "other"}) == [
        "report['kind'] is 'other'; expected one of ['comparison', 'validation']"
    ]


def test_the_docs_list_every_field():
    text = DOCS.read_text(encoding="utf-8")
    for kind, spec in schema.SCHEMAS.items():
        for row in schema.field_table(spec):
            line = f"| {row['field']} | {row['type']} |"
            assert re.search(re.escape(line), text), f"{kind}: {line} missing from {DOCS.name}"
