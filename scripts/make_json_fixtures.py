"""Golden files for src/io/json.ts: what Python's json module writes for non-finite numbers (HF's trainer_state.json layout).

Run: python3 scripts/make_json_fixtures.py  (plain Python 3, no other package) -> test/fixtures/json/
"""
import json
import math
import os

OUT = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "json")
os.makedirs(OUT, exist_ok=True)

# A trainer_state.json-like object whose run diverged: NaN and infinite losses and gradient norms. (Floats are chosen
# so that Python and JavaScript spell them alike: Python writes 1e-05 where JavaScript writes 0.00001.)
state = {
    "global_step": 3,
    "best_metric": None,
    "log_history": [
        {"loss": 2.5, "grad_norm": 1.25, "learning_rate": 0.0005, "step": 1},
        {"loss": math.inf, "grad_norm": math.nan, "learning_rate": 0.5, "step": 2},
        {"loss": math.nan, "grad_norm": -math.inf, "epoch": 0.75, "step": 3, "tags": [], "extra": {}},
    ],
    "name": "run \"a\"\n",
}
with open(os.path.join(OUT, "nonfinite_state.json"), "w", encoding="utf-8") as f:
    f.write(json.dumps(state, indent=2, sort_keys=True) + "\n")
# The values Python reads back, with the non-finite numbers spelled as strings (plain JSON) for the test to compare.
def spelled(v):
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    if isinstance(v, dict):
        return {k: spelled(x) for k, x in v.items()}
    if isinstance(v, list):
        return [spelled(x) for x in v]
    return v
with open(os.path.join(OUT, "nonfinite_state.expected.json"), "w", encoding="utf-8") as f:
    json.dump(spelled(json.load(open(os.path.join(OUT, "nonfinite_state.json")))), f, indent=2, sort_keys=True, allow_nan=False)
