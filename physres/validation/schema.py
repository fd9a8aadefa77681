"""The layout of ``report.json``: one schema per report kind, a checker and the field table.

A schema is a nested value: a dict lists the keys of an object (a key ending in ``?`` is
optional; the single key ``"*"`` stands for any key), a one-element list is a list of that
item, a tuple is "one of", ``None`` is JSON null, and the strings ``"number"`` (int or float;
non-finite floats are stored as null, so a number may be null), ``"int"``, ``"string"``,
``"bool"`` and ``"any"`` are leaves. :func:`check` lists every mismatch; ``docs/validation.md``
holds :func:`field_table` of each schema.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

NUMBER = "number"
_NUMBERS = [NUMBER]

STABILITY = {
    "largest_stable_dt": NUMBER,
    "status": "string",
    "criterion": "string",
    "searched": _NUMBERS,
    "measure": "string",
    "linear": "bool",
}

COMPARISON = {
    "kind": "string",
    "schema_version": "int",
    "system": "string",
    "params": {"*": "any"},
    "t_end": NUMBER,
    "n_traj": "int",
    "reference": "string",
    "dts": _NUMBERS,
    "steppers": {
        "*": {
            "nominal_order": NUMBER,
            "fitted_order": NUMBER,
            "fit_dt_range": (_NUMBERS, None),
            "errors": _NUMBERS,
            "wall_s": _NUMBERS,
            "nfev": _NUMBERS,
            "status": ["string"],
            "invariant_drift": {"*": _NUMBERS},
            "stability": (STABILITY, {}),
        }
    },
}

VALIDATION = {
    "kind": "string",
    "schema_version": "int",
    "stepper": "string",
    "system": "string",
    "system_params": {"*": "any"},
    "data": "string",
    "n_traj": "int",
    "trajectories": ["int"],
    "dt": NUMBER,
    "t": _NUMBERS,
    "nrmse_scale": NUMBER,
    "relative_l2": {
        "per_step_mean": _NUMBERS,
        "mean": NUMBER,
        "final_mean": NUMBER,
        "final_max": NUMBER,
    },
    "nrmse": {"per_step_mean": _NUMBERS, "mean": NUMBER, "final_mean": NUMBER},
    "valid_prediction_time": {
        "threshold": NUMBER,
        "per_trajectory": _NUMBERS,
        "mean": NUMBER,
        "median": NUMBER,
        "horizon": NUMBER,
        "lyapunov_exponent?": NUMBER,
        "mean_lyapunov_times?": NUMBER,
    },
    "invariant_drift": {
        "*": {
            "max_abs": NUMBER,
            "final_mean_abs": NUMBER,
            "relative": "bool",
            "reference_max_abs?": NUMBER,
        }
    },
    "cost": {
        "wall_s": NUMBER,
        "steps": "int",
        "stepper_calls": "int",
        "nfev": "int",
        "note": "string",
        "reference": {"*": NUMBER},
        "reference_method": ("string", None),
        "speedup_vs_reference?": NUMBER,
    },
    "failure": ({"trajectory": "int", "time": NUMBER, "reason": "string"}, None),
}

SCHEMAS = {"comparison": COMPARISON, "validation": VALIDATION}


def check(doc, schema=None, where: str = "report") -> list[str]:
    """Every place where ``doc`` (parsed ``report.json``) departs from ``schema`` (default:
    the one its ``kind`` names); an empty list when it conforms."""
    if schema is None:
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind not in SCHEMAS:
            return [f"{where}['kind'] is {kind!r}; expected one of {sorted(SCHEMAS)}"]
        schema = SCHEMAS[kind]
    problems: list[str] = []
    _check(doc, schema, where, problems)
    return problems


def _check(value, spec, where, problems) -> None:
    if isinstance(spec, tuple):
        for option in spec:
            trial: list[str] = []
            _check(value, option, where, trial)
            if not trial:
                return
        problems.append(f"{where} = {_short(value)} matches none of {_describe(spec)}")
    elif spec is None:
        if value is not None:
            problems.append(f"{where} = {_short(value)}, expected null")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            problems.append(f"{where} = {_short(value)}, expected a list")
            return
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]", problems)
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            problems.append(f"{where} = {_short(value)}, expected an object")
            return
        if set(spec) == {"*"}:
            for k, v in value.items():
                _check(v, spec["*"], f"{where}[{k!r}]", problems)
            return
        keys = {k.rstrip("?"): k.endswith("?") for k in spec}
        for k, optional in keys.items():
            if k in value:
                _check(value[k], spec[k + "?" if optional else k], f"{where}[{k!r}]", problems)
            elif not optional:
                problems.append(f"{where} lacks the key {k!r}")
        problems += [f"{where}[{k!r}] is not in the schema" for k in value if k not in keys]
    elif not _leaf_ok(value, spec):
        problems.append(f"{where} = {_short(value)}, expected {spec}")


def _leaf_ok(value, spec: str) -> bool:
    if spec == "any":
        return True
    if spec == NUMBER:
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    if spec == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if spec == "string":
        return isinstance(value, str)
    if spec == "bool":
        return isinstance(value, bool)
    raise ValueError(f"unknown leaf {spec!r} in a schema")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(spec) -> str:
    if isinstance(spec, tuple):
        return " or ".join(_describe(s) for s in spec)
    if spec is None:
        return "null"
    if isinstance(spec, list):
        return f"list of {_describe(spec[0])}"
    if isinstance(spec, dict):
        if set(spec) == {"*"}:
            return f"object of {_describe(spec['*'])}"
        return "object" if spec else "empty object"
    return spec


MEANING = {
    "kind": '`"comparison"` or `"validation"`: which schema applies',
    "schema_version": "version of this layout (changes when a field changes meaning)",
    "params": "the system's parameters",
    "system_params": "the system's parameters",
    "t_end": "final time of every run",
    "n_traj": "initial states (trajectories) used",
    "reference": "what the errors are measured against",
    "dts": "step sizes, decreasing, each dividing `t_end`",
    "steppers": "stepper name → its record (`StepperResult.to_dict()`)",
    "steppers.*.nominal_order": "the stepper's order as declared",
    "steppers.*.fitted_order": "slope of log(error) vs log(dt); null with < 2 usable points",
    "steppers.*.fit_dt_range": "[dt_min, dt_max] of the points fitted, or null",
    "steppers.*.errors": "per dt: relative L2 error at `t_end`, worst trajectory (null: failed)",
    "steppers.*.wall_s": "per dt: stepping wall time (s)",
    "steppers.*.nfev": "per dt: field evaluations",
    "steppers.*.status": "per dt: `ok`, `diverged` or `solver failed`",
    "steppers.*.invariant_drift": "invariant → per dt: max drift over time and trajectories",
    "steppers.*.stability": "the largest-stable-dt search, or {} when not run",
    "steppers.*.stability.largest_stable_dt": "0: unstable at every dt tried; null: stable at "
    "every dt tried",
    "steppers.*.stability.searched": "[dt_lo, dt_hi] scanned",
    "stepper": "the stepper's name",
    "data": "the reference file",
    "trajectories": "indices of the trajectories scored",
    "dt": "the stepper's step size",
    "t": "times of the scored frames",
    "nrmse_scale": "the reference's standard deviation",
    "relative_l2.per_step_mean": "per frame, mean over trajectories (null after a failure)",
    "valid_prediction_time.per_trajectory": "time until nRMSE first exceeds the threshold",
    "valid_prediction_time.horizon": "the longest VPT possible (the scored span)",
    "valid_prediction_time.lyapunov_exponent": "given by the caller",
    "invariant_drift": "invariant → drift of the stepper (and of the reference)",
    "invariant_drift.*.relative": "drift relative to |I_0| (false: absolute, I_0 = 0)",
    "cost.steps": "steps along each trajectory",
    "cost.reference": "the file's `/stats`, summed over the trajectories used",
    "cost.speedup_vs_reference": "reference wall time / the stepper's",
    "failure": "the first failed rollout, or null",
    "failure.time": "time of the failing step",
}


def field_table(schema, prefix: str = "") -> list[dict]:
    """Rows ``{"field", "type", "meaning"}`` of every field of ``schema`` (``a.b``; ``*`` for
    any key), for the documentation."""
    rows = []
    for key, spec in schema.items():
        name = f"{prefix}.{key.rstrip('?')}" if prefix else key.rstrip("?")
        optional = " (optional)" if key.endswith("?") else ""
        objects = [
            s for s in (spec if isinstance(spec, tuple) else (spec,)) if isinstance(s, dict) and s
        ]
        if key != "*" or objects:
            rows.append(
                {
                    "field": f"`{name}`",
                    "type": _describe(spec) + optional,
                    "meaning": MEANING.get(name, ""),
                }
            )
        for sub in objects:
            if set(sub) == {"*"} and not isinstance(sub["*"], dict):
                continue  # "object of X" says it all
            rows += field_table(sub, name)
    return rows
